#!/usr/bin/env bash
# Prometheus and promtool for the test suite, built from their Go module at a pinned version
# into the same cache as the control plane. The tests use them to check and unit-test the
# chart's alert rules (`promtool check rules`, `promtool test rules`: tests/it/alerts.rs) and
# to run a real Prometheus against the journeys' webhook and controller
# (e2e/tests/journeys/alerts.rs).
#
#   scripts/prometheus.sh build   build both into the cache (no-op when there)
#   scripts/prometheus.sh env     print IRSA_PROMTOOL and IRSA_E2E_PROMETHEUS (built or not)
#
# Binaries: ${IRSA_K8S_CACHE:-~/.cache/irsa/k8s}/prometheus-<version>/{prometheus,promtool}.
set -euo pipefail

# github.com/prometheus/prometheus publishes Prometheus 3.N.x as module version v0.3NN.x.
PROMETHEUS_VERSION="${IRSA_PROMETHEUS_VERSION:-v0.316.0}"
CACHE="${IRSA_K8S_CACHE:-$HOME/.cache/irsa/k8s}"
BIN="$CACHE/prometheus-$PROMETHEUS_VERSION"

log() { echo "prometheus: $*" >&2; }
die() { log "$*"; exit 1; }

cmd_build() {
  [[ -x "$BIN/prometheus" && -x "$BIN/promtool" ]] && return 0
  command -v go >/dev/null || die "go is not on PATH (prometheus is built from its Go module)"
  log "building prometheus and promtool $PROMETHEUS_VERSION into $BIN (first run only)"
  local start=$SECONDS
  rm -rf "$BIN.tmp" && mkdir -p "$BIN.tmp"
  # The module has no replace directives: `go install pkg@version` builds it as published.
  # - remove_all_sd: only the static, file and http service discoveries (the tests scrape
  #   static targets); leaves out every cloud SDK, which halves the build.
  # - no builtinassets: the web UI is not embedded (the tests use the HTTP API only; the UI
  #   answers that its assets are missing).
  # - the version stamped as Prometheus' own build does, so `--version` names it.
  local v="github.com/prometheus/common/version" minor="${PROMETHEUS_VERSION#v0.}" release
  release="${minor:0:1}.${minor:1:2}.${PROMETHEUS_VERSION##*.}" # v0.316.0 -> 3.16.0
  GOBIN="$BIN.tmp" CGO_ENABLED=0 go install -trimpath -tags remove_all_sd \
    -ldflags="-s -X $v.Version=$release -X $v.Branch=module -X $v.Revision=$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
  rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
  log "built in $((SECONDS - start)) s"
}

# The paths, whether or not they are built yet: a test that finds no binary there says to run
# `make deps`.
cmd_env() {
  echo "export IRSA_PROMTOOL=$BIN/promtool"
  echo "export IRSA_E2E_PROMETHEUS=$BIN/prometheus"
}

case "${1:-}" in
  build) cmd_build ;;
  env) cmd_env ;;
  *) die "usage: $0 build|env" ;;
esac
