#!/usr/bin/env bash
# Memory of `irsa webhook`'s ServiceAccount cache fed by a real API server (where
# `make bench-floor` feeds it from a file), side by side with the Go reference webhook
# (amazon-eks-pod-identity-webhook) fed by the same API server: design.md §7's memory target.
# Not a test: it prints numbers. Runs on a fresh local control plane
# (scripts/with-control-plane.sh) on 127.0.0.1; the reference listens on all interfaces (it has
# no flag for the address).
#
# Two levels: only the plane's own ServiceAccounts (`default` of each namespace) and bench/app,
# the review's, then BENCH_SERVICE_ACCOUNTS more, all annotated with a role, over
# BENCH_NAMESPACES namespaces (created with `kubectl create` from Lists of 1,000). At each level
# each webhook is started fresh, one after the other, so its cache comes from its initial list.
# Each is first waited for by its own signal: irsa's /readyz answers 200 (its first full list is
# stored); the reference has no readiness endpoint and serves before its informer has listed, so
# its log must report the ServiceAccount informer's store populated (client-go's "Caches
# populated", -v=2) and its /healthz answer. Even then its cache can still lack the review's
# ServiceAccount (the informer's handlers fill it after the store), so for both, ready means the
# first answer to the review that carries a patch (polled every 0.1 s; irsa's first answer
# carries one, the reference's may come after a few without, each a cache miss it answers at
# once): the comparison is of working servers with their caches filled. 1 s after that answer,
# VmRSS and RssAnon (heap, stacks, relocated data) are read from /proc. irsa's cache's own count
# of entries, the growth per added ServiceAccount and the irsa / reference ratios close the
# table.
#
# The reference is built from its Go module through the module proxy, at REF_VERSION (pinned
# below), into ${IRSA_K8S_CACHE:-~/.cache/irsa/k8s}/pod-identity-webhook-<version>/ on the
# first run (`go` on PATH; about 6 minutes on 2 cores under load, module downloads included): a
# benchmark dependency, so `make test` does not build it.
#
# Knobs (env): BENCH_SERVICE_ACCOUNTS (10000), BENCH_NAMESPACES (100), BENCH_PORT (18448),
# BENCH_METRICS_PORT (19093), BENCH_REF_PORT (18449), BENCH_REF_METRICS_PORT (19094),
# IRSA_POD_IDENTITY_WEBHOOK_VERSION, IRSA_K8S_CACHE, IRSA_CONTROL_PLANE_DIR and
# IRSA_VERIFIER_DIR (the plane's and its verifying STS's state directories).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

REF_VERSION=${IRSA_POD_IDENTITY_WEBHOOK_VERSION:-v0.6.17}
REF_DIR=${IRSA_K8S_CACHE:-$HOME/.cache/irsa/k8s}/pod-identity-webhook-$REF_VERSION
REF_BIN=$REF_DIR/amazon-eks-pod-identity-webhook

# Built before the plane starts, which would otherwise idle through the build.
build_reference() {
    [[ -x $REF_BIN ]] && return 0
    bench_require go
    echo "building amazon-eks-pod-identity-webhook $REF_VERSION into $REF_DIR (first run only)" >&2
    rm -rf "$REF_DIR.tmp"
    # Its go.mod has no replace directives, so `go install module@version` builds it as
    # published; static and stripped, as its Dockerfile builds the image's binary.
    GOBIN=$REF_DIR.tmp CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' \
        "github.com/aws/amazon-eks-pod-identity-webhook@$REF_VERSION"
    rm -rf "$REF_DIR" && mv "$REF_DIR.tmp" "$REF_DIR"
}

if [[ -z "${BENCH_SA_WATCH_IN_PLANE:-}" ]]; then
    build_reference
    BENCH_SA_WATCH_IN_PLANE=1 exec ./scripts/with-control-plane.sh "$0" "$@"
fi

PORT=${BENCH_PORT:-18448}
MPORT=${BENCH_METRICS_PORT:-19093}
REF_PORT=${BENCH_REF_PORT:-18449}
REF_MPORT=${BENCH_REF_METRICS_PORT:-19094}
N_SA=${BENCH_SERVICE_ACCOUNTS:-10000}
NAMESPACES=${BENCH_NAMESPACES:-100}
REVIEW=benches/data/review-5k.json

bench_require kubectl python3 curl openssl readelf
bench_setup

# Lists of 1,000 ServiceAccounts, one of the namespaces and one of bench/app (the review's pod's
# ServiceAccount) for `kubectl create -f`.
python3 - "$WORK" "$N_SA" "$NAMESPACES" <<'PY'
import json, sys
work, n, namespaces = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def write(name, items):
    with open(f"{work}/{name}.json", "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
def service_account(namespace, name, role):
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"namespace": namespace, "name": name,
                         "annotations": {"eks.amazonaws.com/role-arn": f"arn:aws:iam::111122223333:role/{role}"}}}
write("namespaces", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                     for name in ["bench"] + [f"bench-{i}" for i in range(namespaces)]])
write("app", [service_account("bench", "app", "bench-app")])
for start in range(0, n, 1000):
    write(f"sa-{start // 1000:04d}", [service_account(f"bench-{i % namespaces}", f"sa-{i}", f"r-{i}")
                                      for i in range(start, min(start + 1000, n))])
PY

start_irsa() {
    REVIEW_PORT=$PORT
    bench_start_webhook -
}

start_reference() {
    REVIEW_PORT=$REF_PORT
    # Its flags as main.go declares them (out of cluster: a kubeconfig and certificate files);
    # the prefix and audience are its defaults and irsa's, spelled out.
    "$REF_BIN" --in-cluster=false --kubeconfig "$KUBECONFIG" \
        --tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key" \
        --port "$REF_PORT" --metrics-port "$REF_MPORT" \
        --annotation-prefix eks.amazonaws.com --token-audience sts.amazonaws.com \
        -v=2 2> "$WORK/webhook.log" &
    PID=$!
    bench_wait reference_ready
}

reference_ready() {
    grep -q 'Caches populated.*\*v1\.ServiceAccount' "$WORK/webhook.log" \
        && curl -fsSk -o /dev/null "https://127.0.0.1:$REF_PORT/healthz" 2>/dev/null
}

# mutates: the webhook started last answers the review allowing the pod with a non-empty JSON
# patch.
mutates() {
    curl -fsS -k -o "$WORK/answer.json" -H 'content-type: application/json' \
        --data-binary "@$REVIEW" "https://127.0.0.1:$REVIEW_PORT/mutate" 2>/dev/null \
        && python3 -c 'import base64, json, sys
r = json.load(open(sys.argv[1]))["response"]
sys.exit(not (r.get("allowed") and r.get("patchType") == "JSONPatch"
              and json.loads(base64.b64decode(r.get("patch") or "W10="))))' "$WORK/answer.json"
}

declare -A READY_MS RSS_KB ANON_KB
# run WEBHOOK LEVEL: starts WEBHOOK (irsa or reference) fresh, times it to its first answer with a
# patch and, 1 s after that answer, reads its memory: READY_MS, RSS_KB and ANON_KB[WEBHOOK,LEVEL].
# The webhook is left running (bench_stop).
run() {
    local t0
    t0=$(date +%s%N)
    "start_$1"
    bench_wait mutates
    READY_MS[$1,$2]=$(( ($(date +%s%N) - t0) / 1000000 ))
    sleep 1
    RSS_KB[$1,$2]=$(proc_kb VmRSS)
    ANON_KB[$1,$2]=$(proc_kb RssAnon)
}

# measure LEVEL LABEL: both webhooks, one after the other, at this level; one row of the table.
measure() {
    local webhook metrics entries
    for webhook in irsa reference; do
        run "$webhook" "$1"
        if [[ $webhook == irsa ]]; then
            metrics=$(curl -fsS "http://127.0.0.1:$MPORT/metrics")
            entries="$(awk '/^irsa_webhook_sa_cache_entries / { print $2 }' <<<"$metrics") / $(
                awk '/^irsa_webhook_sa_cache_annotated_entries / { print $2 }' <<<"$metrics")"
        fi
        bench_stop
    done
    printf '| %s | %s | %s | %s |\n' "$2" "$(cells irsa "$1")" "$(cells reference "$1")" "$entries"
}

# cells WEBHOOK LEVEL: its ready time, RSS and anonymous memory, as table cells.
cells() {
    printf '%d ms | %s | %s' "${READY_MS[$1,$2]}" "$(mib "${RSS_KB[$1,$2]}")" "$(mib "${ANON_KB[$1,$2]}")"
}

# growth WEBHOOK: bytes of RSS and of anonymous memory per added ServiceAccount, as table cells.
growth() {
    awk -v r0="${RSS_KB[$1,own]}" -v r1="${RSS_KB[$1,many]}" -v a0="${ANON_KB[$1,own]}" \
        -v a1="${ANON_KB[$1,many]}" -v n="$N_SA" \
        'BEGIN { printf " | %.0f bytes | %.0f bytes", (r1 - r0) * 1024 / n, (a1 - a0) * 1024 / n }'
}

# ratio KIND LEVEL: irsa's KIND_KB over the reference's, two decimals.
ratio() {
    local -n kb=$1
    awk -v a="${kb[irsa,$2]}" -v b="${kb[reference,$2]}" 'BEGIN { printf "%.2f", a / b }'
}

kubectl create -f "$WORK/namespaces.json" >/dev/null
# The namespaces' `default` ServiceAccounts come from kube-controller-manager.
for _ in $(seq 1 300); do
    [[ $(kubectl get serviceaccounts -A --no-headers | grep -c '^bench-') -ge $NAMESPACES ]] && break
    sleep 0.2
done
kubectl create -f "$WORK/app.json" >/dev/null

echo
echo "== irsa webhook and the Go reference ($REF_VERSION) fed by the API server ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%d))"
echo "| ServiceAccounts | irsa first patch after | irsa RSS | irsa anonymous | reference first patch after | reference RSS | reference anonymous | irsa cache entries / annotated |"
echo "|---|---|---|---|---|---|---|---|"
measure own "the plane's own and bench/app"
for list in "$WORK"/sa-*.json; do kubectl create -f "$list" >/dev/null; done
measure many "+ $N_SA annotated"
echo "| growth per added ServiceAccount | $(growth irsa) | $(growth reference) | |"
echo "irsa / reference: RSS $(ratio RSS_KB own) (the plane's own), $(ratio RSS_KB many) (+ $N_SA);" \
    "anonymous $(ratio ANON_KB own), $(ratio ANON_KB many)"
