# The verbs people type. `make test` is THE test command: it installs what the tests need
# (PyPI packages, cargo-nextest, the local control plane's binaries built from Go modules)
# and runs every check CI runs, the cluster tests included, against a local control plane.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test deps lint unit crds bench bench-webhook e2e demo

test: deps lint unit

deps:
	./scripts/install-test-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Every test of the workspace (the root package, core/ and e2e/), the `#[ignore]`d cluster journeys of
# e2e/tests/journeys included, against a local control plane (etcd + kube-apiserver +
# kube-controller-manager on 127.0.0.1) that lives for this run.
unit:
	./scripts/with-control-plane.sh $(CARGO) nextest run --workspace --locked --no-fail-fast --run-ignored all

# Regenerate checked-in generated artefacts.
# The chart ships an identical copy (tests/it/packaging.rs fails when either drifts).
crds:
	$(CARGO) run --quiet -- crd > crds/irsa.dev.yaml
	cp crds/irsa.dev.yaml charts/irsa/crds/irsa.dev.yaml

bench:
	$(CARGO) bench --bench mutate
	$(CARGO) bench --bench trust

# Load benchmark of `irsa webhook` (h2load from nghttp2-client; release build; 127.0.0.1 only).
bench-webhook:
	./scripts/bench-webhook.sh

# `irsa webhook` beside the floor server of benches/floor.rs, in one run: instructions per
# request under callgrind, throughput, CPU per request and latency with the server pinned to one
# core (h2 and HTTP/1.1), and RSS. See docs/benchmarks.md.
.PHONY: bench-floor
bench-floor:
	./scripts/bench-floor.sh

# The cluster journeys against the cluster in KUBECONFIG (kind, EKS, ...): see docs/development.md.
# --workspace: the journeys run the `irsa` binary of the same build.
e2e:
	IRSA_E2E=1 $(CARGO) nextest run --workspace --run-ignored all --no-capture -E 'binary_id(irsa-e2e::journeys)'

# The local control plane alone, for running single tests by hand:
#   make cluster-up && source <(scripts/control-plane.sh env) && cargo nextest run ... ; make cluster-down
.PHONY: cluster-up cluster-down
cluster-up:
	./scripts/control-plane.sh up
cluster-down:
	./scripts/control-plane.sh down

# The whole trip on this machine (scripts/demo.sh): a verifying STS, a control plane whose issuer
# is one of its buckets, irsa installed from charts/irsa, config/samples/, and the pod's process
# getting credentials and using S3; each step with its evidence. Leaves nothing running, unless
# IRSA_DEMO_KEEP=1 (then `make demo-down` stops it). The offline one: `cargo run -- mutate ...`.
.PHONY: demo-down
demo:
	CARGO=$(CARGO) ./scripts/demo.sh
demo-down:
	./scripts/demo.sh down

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

# Coverage-guided fuzzing (fuzz/, cargo-fuzz on nightly): each target for FUZZ_SECONDS,
# printing executions per target and whether any crashed. See docs/development.md "Fuzzing".
.PHONY: fuzz
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./scripts/fuzz.sh

# Memory price of one review: peak and settled RSS of the webhook for the largest review it
# accepts and for over-limit ones (release build, 127.0.0.1 only). See docs/benchmarks.md "Webhook memory".
.PHONY: bench-rss
bench-rss:
	./scripts/bench-rss.sh

# Memory of the controller's pod watch at 0, 10k and 100k pods on a local control plane
# (release build, 127.0.0.1 only). See docs/benchmarks.md "Controller memory with many pods".
.PHONY: bench-pods-rss
bench-pods-rss:
	./scripts/bench-pods-rss.sh

# Memory of the webhook's ServiceAccount cache fed by a local control plane, with the plane's own
# and 10k annotated ServiceAccounts, side by side with the Go reference webhook
# (amazon-eks-pod-identity-webhook, built from its Go module on the first run) against the same
# API server (release build). See docs/benchmarks.md.
.PHONY: bench-sa-watch
bench-sa-watch:
	./scripts/bench-sa-watch.sh

# The controller at scale on a local control plane with moto (release build, 127.0.0.1 only):
# 1,000 roles, 10,000 bindings, 100,000 ServiceAccounts; convergence, IAM calls, a burst, the
# steady state, memory. BENCH_SCALE=small for a tenth. See docs/benchmarks.md.
.PHONY: bench-controller
bench-controller:
	./scripts/bench-controller.sh

# `irsa agent` with 1,000 pods of its node asking at once, then every minute, on a local control
# plane with moto's STS (release build, 127.0.0.1 only): STS calls, latency, RSS, beside a
# baseline that reuses no credentials. BENCH_SCALE=small for 100 pods. See docs/benchmarks.md.
.PHONY: bench-agent
bench-agent:
	./scripts/bench-agent.sh
