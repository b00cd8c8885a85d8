#!/usr/bin/env bash
# `irsa agent` under the load of many pods of its node: the release binary against a fresh
# local control plane (scripts/with-control-plane.sh) and moto's STS, everything on 127.0.0.1.
# The load and the numbers are e2e/benches/agent.rs's (its header says what is measured, the
# baseline and the knobs); its last line is the summary:
#   pods N requests Q sts_calls C p50_ms X p99_ms Y rss_mib M
# BENCH_SCALE=full (default): 1,000 pods, a burst then 3 rounds a minute apart; small: 100 pods.
# BENCH_IRSA_BIN: a release binary to use instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${BENCH_AGENT_IN_PLANE:-}" ]]; then
    BENCH_AGENT_IN_PLANE=1 exec ./scripts/with-control-plane.sh "$0" "$@"
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [[ -n "${BENCH_IRSA_BIN:-}" ]]; then
    cp "$BENCH_IRSA_BIN" "$WORK/irsa"
else
    cargo build --release --locked --bin irsa
    # A copy: a shared target directory may get another checkout's binary meanwhile.
    cp "${CARGO_TARGET_DIR:-target}/release/irsa" "$WORK/irsa"
fi
# The load generator is built like the tests (dev profile): it only sends requests and reads
# clocks; the agent it measures is the release binary.
IRSA_E2E=1 IRSA_E2E_BIN="$WORK/irsa" cargo bench --locked -p irsa-e2e --bench agent --profile dev
