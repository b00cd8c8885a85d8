#!/usr/bin/env bash
# Runs a command against a fresh local control plane (scripts/control-plane.sh): brings it up,
# exports its KUBECONFIG (and IRSA_E2E=1), runs the command, and always brings it down again.
# The exit status is the command's.
set -euo pipefail
cd "$(dirname "$0")/.."

# A plane left over from an interrupted run (same state dir) is replaced, not reused: every
# test run starts from an empty etcd.
./scripts/control-plane.sh down
trap './scripts/control-plane.sh down' EXIT
./scripts/control-plane.sh up >/dev/null
# shellcheck disable=SC1090
source <(./scripts/control-plane.sh env)
"$@"
