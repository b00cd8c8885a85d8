#!/usr/bin/env bash
# Memory of `irsa webhook`'s ServiceAccount cache fed by a real API server, where
# `make bench-floor` feeds it from a file. Not a test: it prints numbers. Runs on a fresh local
# control plane (scripts/with-control-plane.sh), everything on 127.0.0.1.
#
# Two levels: only the plane's own ServiceAccounts (`default` of each namespace), then
# BENCH_SERVICE_ACCOUNTS more, all annotated with a role, over BENCH_NAMESPACES namespaces
# (created with `kubectl create` from Lists of 1,000). At each level a webhook is started fresh,
# so its cache comes from the paged initial list: seconds until /readyz answers 200, then, 1 s
# after one admission, VmRSS and RssAnon (heap, stacks, relocated data), and the cache's own
# count of entries. The growth of anonymous memory per added ServiceAccount closes the table.
#
# Knobs (env): BENCH_SERVICE_ACCOUNTS (10000), BENCH_NAMESPACES (100), BENCH_PORT (18448),
# BENCH_METRICS_PORT (19093), IRSA_CONTROL_PLANE_DIR (the plane's state directory).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${BENCH_SA_WATCH_IN_PLANE:-}" ]]; then
    BENCH_SA_WATCH_IN_PLANE=1 exec ./scripts/with-control-plane.sh "$0" "$@"
fi

PORT=${BENCH_PORT:-18448}
MPORT=${BENCH_METRICS_PORT:-19093}
N_SA=${BENCH_SERVICE_ACCOUNTS:-10000}
NAMESPACES=${BENCH_NAMESPACES:-100}
REVIEW=benches/data/review-5k.json

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_require kubectl python3 curl openssl readelf
bench_setup

# Lists of 1,000 ServiceAccounts (and one of the namespaces) for `kubectl create -f`.
python3 - "$WORK" "$N_SA" "$NAMESPACES" <<'PY'
import json, sys
work, n, namespaces = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def write(name, items):
    with open(f"{work}/{name}.json", "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
write("namespaces", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-{i}"}}
                     for i in range(namespaces)])
for start in range(0, n, 1000):
    write(f"sa-{start // 1000:04d}", [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"namespace": f"bench-{i % namespaces}", "name": f"sa-{i}",
                      "annotations": {"eks.amazonaws.com/role-arn": f"arn:aws:iam::111122223333:role/r-{i}"}}}
        for i in range(start, min(start + 1000, n))])
PY

# measure LABEL: a fresh webhook's readiness time, idle RSS and cache size; sets ANON.
measure() {
    local t0 ready metrics
    t0=$(date +%s%N)
    bench_start_webhook -
    ready=$(( ($(date +%s%N) - t0) / 1000000 ))
    curl -fsS -k -o /dev/null -H 'content-type: application/json' --data-binary "@$REVIEW" \
        "https://127.0.0.1:$PORT/mutate"
    sleep 1
    ANON=$(proc_kb RssAnon)
    metrics=$(curl -fsS "http://127.0.0.1:$MPORT/metrics")
    printf '| %s | %d ms | %s | %s | %s / %s |\n' "$1" "$ready" "$(mib "$(proc_kb VmRSS)")" \
        "$(mib "$ANON")" \
        "$(awk '/^irsa_webhook_sa_cache_entries / { print $2 }' <<<"$metrics")" \
        "$(awk '/^irsa_webhook_sa_cache_annotated_entries / { print $2 }' <<<"$metrics")"
    bench_stop
}

kubectl create -f "$WORK/namespaces.json" >/dev/null
# The namespaces' `default` ServiceAccounts come from kube-controller-manager.
for _ in $(seq 1 300); do
    [[ $(kubectl get serviceaccounts -A --no-headers | grep -c '^bench-') -ge $NAMESPACES ]] && break
    sleep 0.2
done

echo
echo "== irsa webhook fed by the API server ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%d))"
echo "| ServiceAccounts | ready after | idle RSS | anonymous | cache entries / annotated |"
echo "|---|---|---|---|---|"
measure "the plane's own"
before=$ANON
for list in "$WORK"/sa-*.json; do kubectl create -f "$list" >/dev/null; done
measure "+ $N_SA annotated"
awk -v a="$before" -v b="$ANON" -v n="$N_SA" \
    'BEGIN { printf "growth of anonymous memory per annotated ServiceAccount: %.0f bytes\n", (b - a) * 1024 / n }'
