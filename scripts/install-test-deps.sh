#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine; a no-op when already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import moto, flask, helm_python' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
command -v moto_server >/dev/null || { echo "moto_server not on PATH after install" >&2; exit 1; }
# The local control plane the cluster tests run against: etcd, kube-apiserver,
# kube-controller-manager, kubectl and helm built from their Go modules (cached; only the
# first run builds). scripts/with-control-plane.sh puts that kubectl first on PATH, which
# tests/it/packaging.rs also uses for `kubectl kustomize`.
./scripts/control-plane.sh build
# The verifying STS of the whole-trip tests: SeaweedFS built from its Go module (cached likewise).
./scripts/verifying-sts.sh build
# promtool and Prometheus, for the alert rules' unit tests and the Prometheus journey, built
# from their Go module (cached likewise).
./scripts/prometheus.sh build
