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
# The chart ships an identical copy (tests/packaging.rs fails when either drifts).
crds:
	$(CARGO) run --quiet -- crd > crds/irsa.dev.yaml
	cp crds/irsa.dev.yaml charts/irsa/crds/irsa.dev.yaml

bench:
	$(CARGO) bench --bench mutate
	$(CARGO) bench --bench trust

# Load benchmark of `irsa webhook` (h2load from nghttp2-client; release build; 127.0.0.1 only).
bench-webhook:
	./scripts/bench-webhook.sh

e2e:
	$(CARGO) nextest run --test e2e --no-capture

demo:
	$(CARGO) run --quiet -- mutate -f config/samples/pod.yaml --service-account config/samples/serviceaccount.yaml

# Container image (needs a Docker engine with BuildKit; the tests do not).
# IMAGE=registry/name make image; the tag is the crate version, as the chart's appVersion.
.PHONY: image chart
IMAGE ?= ghcr.io/irsa-dev/irsa
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
image:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) .
	docker run --rm $(IMAGE):$(VERSION) --version

# Lint the chart and print its default rendering (values: CHART_VALUES='{"json":...}').
CHART_VALUES ?= {"controller":{"clusterName":"demo"}}
chart:
	python3 scripts/helm-chart.py lint charts/irsa --values '$(CHART_VALUES)'
	python3 scripts/helm-chart.py render charts/irsa --values '$(CHART_VALUES)'
