#!/usr/bin/env bash
# Runs a command against a fresh local control plane (scripts/control-plane.sh) and the
# verifying STS beside it (scripts/verifying-sts.sh, trusting the plane's CA so its STS can read
# the API server's discovery documents): brings both up, exports their environment (KUBECONFIG,
# IRSA_E2E=1, IRSA_E2E_VERIFIER_*) and where promtool and Prometheus are (scripts/prometheus.sh:
# IRSA_PROMTOOL, IRSA_E2E_PROMETHEUS), runs the command, and always brings both down again. The
# exit status is the command's.
set -euo pipefail
cd "$(dirname "$0")/.."

# A plane left over from an interrupted run (same state dir) is replaced, not reused: every
# test run starts from an empty etcd.
./scripts/verifying-sts.sh down
./scripts/control-plane.sh down
trap './scripts/verifying-sts.sh down; ./scripts/control-plane.sh down' EXIT
./scripts/control-plane.sh up >/dev/null
# shellcheck disable=SC1090
source <(./scripts/control-plane.sh env)
IRSA_VERIFIER_TRUST="$IRSA_E2E_CLUSTER_CA" ./scripts/verifying-sts.sh up >/dev/null
# shellcheck disable=SC1090
source <(./scripts/verifying-sts.sh env)
# shellcheck disable=SC1090
source <(./scripts/prometheus.sh env)
"$@"
