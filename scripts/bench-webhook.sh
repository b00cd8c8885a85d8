#!/usr/bin/env bash
# Load benchmark of `irsa webhook` (docs/design.md §7), all on 127.0.0.1, stops by itself.
#
# Builds the release binary, makes a self-signed certificate (openssl), starts the webhook in
# its test/bench mode (`--service-accounts-file`: ServiceAccounts from a file, no Kubernetes),
# and drives POST /mutate with h2load (nghttp2-client) over kept-alive HTTP/2 TLS connections:
#   1. throughput at saturation,
#   2. latency at a fixed 1000 req/s (client-side p50/p99 from h2load's per-request log,
#      server-side share under 1ms from the webhook's own histogram),
#   3. the server's idle RSS and peak RSS (VmRSS / VmHWM from /proc).
#
# Knobs (env): BENCH_PORT (18443), BENCH_METRICS_PORT (19090), BENCH_SECONDS (15),
# BENCH_SERVICE_ACCOUNTS (10000, one in ten annotated).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${BENCH_PORT:-18443}
MPORT=${BENCH_METRICS_PORT:-19090}
SECONDS_PER_RUN=${BENCH_SECONDS:-15}
N_SA=${BENCH_SERVICE_ACCOUNTS:-10000}

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_require h2load openssl curl
bench_setup

# N_SA ServiceAccounts over 100 namespaces, every tenth with a role; the benchmarked pod runs
# as bench/app.
bench_service_accounts "$N_SA" 10 > "$WORK/serviceaccounts.json"

# A realistic review (benches/data/review-5k.json): a Deployment's pod with an init container,
# a sidecar, env, probes, resources, volumes and the usual managed metadata (about 5 KB).
REVIEW=benches/data/review-5k.json

bench_start_webhook "$WORK/serviceaccounts.json"

# Sanity: the review is mutated (a patch comes back).
curl -fsS -k --http2 -H 'content-type: application/json' --data-binary "@$REVIEW" \
    "https://127.0.0.1:$PORT/mutate" | grep -q '"patchType":"JSONPatch"' \
    || { echo "the benchmark review was not mutated" >&2; exit 1; }

sleep 1
IDLE_RSS_KB=$(proc_kb VmRSS)

H2="h2load -H content-type:application/json -d $REVIEW"
URL="https://127.0.0.1:$PORT/mutate"

echo "== warm-up"
$H2 -D 3 -c 4 -m 8 -t 1 "$URL" >/dev/null

echo "== saturation: ${SECONDS_PER_RUN}s, 16 connections x 16 streams, 1 client thread"
$H2 -D "$SECONDS_PER_RUN" -c 16 -m 16 -t 1 "$URL" | tee "$WORK/sat.txt" | grep -E "finished in|requests:|status codes:"
SAT_RPS=$(awk '/finished in/ { for (i = 1; i <= NF; i++) if ($i ~ /req\/s/) { gsub(",", "", $(i-1)); print $(i-1) } }' "$WORK/sat.txt")

# The webhook's own latency histogram: "le count" lines, cumulative.
buckets() { curl -fsS "http://127.0.0.1:$MPORT/metrics" \
    | sed -n 's/^irsa_webhook_request_duration_seconds_bucket{le="\([^"]*\)"} \([0-9.]*\).*/\1 \2/p'; }
buckets > "$WORK/before.txt"

echo "== fixed rate: 1000 req/s for ${SECONDS_PER_RUN}s (10 connections x 100 req/s, kept alive)"
$H2 -D "$SECONDS_PER_RUN" -c 10 -m 1 -t 1 --rps 100 --log-file "$WORK/rps.log" "$URL" \
    | tee "$WORK/rps.txt" | grep -E "finished in|requests:|status codes:"
read -r P50 P99 N < <(bench_latency "$WORK/rps.log")
buckets > "$WORK/after.txt"
# Server-side: share under 1 ms, and the bucket bounds holding p50/p99 of this run only.
read -r SERVER_UNDER_1MS SERVER_P50 SERVER_P99 < <(awk '
    NR == FNR { before[$1] = $2; next }
    { le[++n] = $1; d[n] = $2 - before[$1] }
    END {
        total = d[n]; p50 = p99 = "n/a"
        for (i = 1; i <= n; i++) {
            if (le[i] == "0.001") under = d[i]
            if (p50 == "n/a" && d[i] >= 0.50 * total) p50 = le[i]
            if (p99 == "n/a" && d[i] >= 0.99 * total) p99 = le[i]
        }
        printf "%.2f %s %s\n", 100 * under / total, p50 * 1000, p99 * 1000
    }' "$WORK/before.txt" "$WORK/after.txt")

PEAK_RSS_KB=$(proc_kb VmHWM)
kill -TERM "$PID"
set +e
wait "$PID"
EXIT=$?
set -e
PID=""

echo
echo "== irsa webhook benchmark ($(nproc) cores, $N_SA ServiceAccounts, $(wc -c < "$REVIEW")-byte review)"
printf "throughput at saturation:      %s req/s\n" "$SAT_RPS"
printf "at 1000 req/s (client side):   p50 %s ms, p99 %s ms over %s requests\n" "$P50" "$P99" "$N"
printf "at 1000 req/s (server side):   p50 <= %s ms, p99 <= %s ms (histogram buckets); %s%% under 1 ms\n" "$SERVER_P50" "$SERVER_P99" "$SERVER_UNDER_1MS"
printf "machine load average:          %s\n" "$(cut -d' ' -f1-3 /proc/loadavg)"
awk -v i="$IDLE_RSS_KB" -v p="$PEAK_RSS_KB" 'BEGIN { printf "RSS idle / peak:               %.1f MB / %.1f MB\n", i / 1024, p / 1024 }'
printf "exit status after SIGTERM:     %s\n" "$EXIT"
