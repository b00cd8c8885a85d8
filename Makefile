# The verbs people type. `make test` is THE test command: it installs what the tests need
# (PyPI packages, cargo-nextest if missing) and runs every check CI runs.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test deps lint unit crds bench bench-webhook e2e demo

test: deps lint unit

deps:
	./scripts/install-test-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

unit:
	$(CARGO) nextest run --locked --no-fail-fast

# Regenerate checked-in generated artefacts.
crds:
	$(CARGO) run --quiet -- crd > crds/irsa.dev.yaml

bench:
	$(CARGO) bench --bench mutate

# Load benchmark of `irsa webhook` (h2load from nghttp2-client; release build; 127.0.0.1 only).
bench-webhook:
	./scripts/bench-webhook.sh

e2e:
	$(CARGO) nextest run --test e2e --no-capture

demo:
	$(CARGO) run --quiet -- mutate -f config/samples/pod.yaml --service-account config/samples/serviceaccount.yaml
