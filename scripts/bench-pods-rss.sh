#!/usr/bin/env bash
# Memory of the controller's pod watch with many pods: RSS of `irsa controller`
# at 0, 10,000 and BENCH_PODS (100,000) pods, a small fraction of them uninjected. Not a test:
# it prints numbers. Runs on a fresh local control plane (scripts/with-control-plane.sh; no
# kubelet, so the pods stay Pending) and a local moto for STS; everything on 127.0.0.1.
#
# The pods are spread over BENCH_NAMESPACES namespaces, each with a ServiceAccount `app`
# annotated with a role; one pod in BENCH_UNINJECTED_EVERY is bare (what the webhook would
# have injected is missing), the others carry the token volume, mount and AWS variables, as
# mutated pods do. No webhook is registered: the pods are stored as sent. At each level:
#   watching  the controller already running (started at the previous level) that watched the
#             new pods arrive: VmRSS once its uninjected count is right, and its VmHWM;
#   fresh     a controller started at this level: seconds until its pod watch synced (the
#             paged initial list), VmRSS 2 s later and VmHWM (the peak of the initial list).
#
# Knobs (env): BENCH_PODS (100000), BENCH_NAMESPACES (10), BENCH_UNINJECTED_EVERY (100),
# BENCH_PARALLEL (6 kubectl create processes), BENCH_METRICS_PORT (19191), BENCH_MOTO_PORT
# (15123), BENCH_IRSA_BIN (a release binary to use instead of building one),
# IRSA_CONTROL_PLANE_DIR (the plane's state directory).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${BENCH_PODS_IN_PLANE:-}" ]]; then
    BENCH_PODS_IN_PLANE=1 exec ./scripts/with-control-plane.sh "$0" "$@"
fi

PODS=${BENCH_PODS:-100000}
NAMESPACES=${BENCH_NAMESPACES:-10}
EVERY=${BENCH_UNINJECTED_EVERY:-100}
PARALLEL=${BENCH_PARALLEL:-6}
MPORT=${BENCH_METRICS_PORT:-19191}
MOTO_PORT=${BENCH_MOTO_PORT:-15123}
ROLE=arn:aws:iam::111122223333:role/bench-app
CHUNK=1000

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_require kubectl moto_server python3 curl

bench_controller_setup
"$BIN" controller --help | grep -q -- --detect-uninjected-pods ||
    { echo "$BIN has no pod watch (--detect-uninjected-pods)" >&2; exit 1; }
kubectl apply --server-side -f crds/irsa.dev.yaml >/dev/null
kubectl wait --for condition=established --timeout=60s crd/iamrolebindings.irsa.dev crd/iamrolegrants.irsa.dev >/dev/null
for i in $(seq 0 $((NAMESPACES - 1))); do
    kubectl create namespace "bench-$i" >/dev/null
    kubectl -n "bench-$i" create serviceaccount app >/dev/null
    kubectl -n "bench-$i" annotate serviceaccount app "eks.amazonaws.com/role-arn=$ROLE" >/dev/null
done

start_controller() {
    "$BIN" controller --cluster-name bench --leader-election false \
        --manage-oidc-provider false --manage-annotated-serviceaccounts false \
        --aws-endpoint-url "http://127.0.0.1:$MOTO_PORT" \
        --metrics-listen "127.0.0.1:$MPORT" --log-format json >"$WORK/controller.log" 2>&1 &
    PID=$!
    local start=$SECONDS
    until grep -qs '"pod watch synced"' "$WORK/controller.log"; do
        kill -0 "$PID" 2>/dev/null || { tail -20 "$WORK/controller.log" >&2; exit 1; }
        sleep 0.2
    done
    SYNC_SECONDS=$((SECONDS - start))
}
stop_controller() { kill -TERM "$PID"; wait "$PID" || true; PID=""; }
uninjected() {
    curl -fsS "http://127.0.0.1:$MPORT/metrics" |
        awk '/^irsa_controller_uninjected_pods\{/ { n += $2 } END { print n + 0 }'
}
wait_uninjected() { # expected count
    for _ in $(seq 1 1800); do [[ "$(uninjected)" == "$1" ]] && return; sleep 1; done
    echo "the controller counts $(uninjected) uninjected pods, not $1" >&2; exit 1
}

# create_pods FROM TO: pods FROM..TO-1, in Lists of CHUNK created by PARALLEL kubectl processes.
create_pods() {
    python3 - "$WORK/lists" "$1" "$2" "$NAMESPACES" "$EVERY" "$CHUNK" "$ROLE" <<'PY'
import json, os, sys
out, lo, hi, nss, every, chunk, role = sys.argv[1], *map(int, sys.argv[2:7]), sys.argv[7]
os.makedirs(out, exist_ok=True)
mount = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
def pod(i):
    c = {"name": "app", "image": "registry.k8s.io/pause:3.10",
         "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": f"p-{i}", "namespace": f"bench-{i % nss}",
                      "labels": {"app": "bench", "pod-template-hash": "5d8f7c9b4"}},
         "spec": {"serviceAccountName": "app", "containers": [c]}}
    if i % every:
        c["env"] = [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
                    {"name": "AWS_ROLE_ARN", "value": role},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": f"{mount}/token"}]
        c["volumeMounts"] = [{"name": "aws-iam-token", "mountPath": mount, "readOnly": True}]
        p["spec"]["volumes"] = [{"name": "aws-iam-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "sts.amazonaws.com",
                                     "expirationSeconds": 86400, "path": "token"}}]}}]
    return p
for start in range(lo, hi, chunk):
    items = [pod(i) for i in range(start, min(hi, start + chunk))]
    with open(f"{out}/{start:08d}.json", "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
PY
    find "$WORK/lists" -name '*.json' -print0 |
        xargs -0 -P "$PARALLEL" -I{} sh -c 'kubectl create -f "$1" >/dev/null && rm "$1"' _ {}
}
expected() { # uninjected pods among 0..N-1
    python3 -c "import sys; n = int(sys.argv[1]); print(sum(1 for i in range(n) if i % int(sys.argv[2]) == 0))" "$1" "$EVERY"
}

echo
echo "irsa controller RSS with N pods ($NAMESPACES namespaces, 1 in $EVERY uninjected), $(date -u +%F)"
printf '%-8s %-11s %-22s %-16s %-30s\n' pods uninjected "watching RSS / peak" "create (s)" "fresh: sync (s), RSS / peak"
start_controller
WATCHER=$PID
have=0
for level in 0 10000 "$PODS"; do
    [[ "$level" -le "$PODS" ]] || continue
    [[ "$level" -ge "$have" ]] || continue
    t0=$SECONDS
    if [[ "$level" -gt "$have" ]]; then
        create_pods "$have" "$level"
    fi
    created=$((SECONDS - t0))
    have=$level
    want=$(expected "$level")
    PID=$WATCHER
    wait_uninjected "$want"
    sleep 2
    watching="$(mib "$(proc_kb VmRSS)") / $(mib "$(proc_kb VmHWM)")"
    # A fresh controller at this level: the initial list of every pod at once.
    stop_controller
    start_controller
    sleep 2
    wait_uninjected "$want"
    fresh="$SYNC_SECONDS, $(mib "$(proc_kb VmRSS)") / $(mib "$(proc_kb VmHWM)")"
    WATCHER=$PID
    printf '%-8s %-11s %-22s %-16s %-30s\n' "$level" "$want" "$watching" "$created" "$fresh"
done
stop_controller
