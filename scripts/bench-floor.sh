#!/usr/bin/env bash
# `irsa webhook` beside its floor (issue 16), in one run, all on 127.0.0.1; stops by itself.
#
# The floor (benches/floor.rs) is the least an HTTPS admission server on the same stack can
# do: axum + rustls (aws-lc-rs), same TLS configuration, reads the body, parses it into
# serde_json::Value, answers a constant patch. Both servers get the same review
# (benches/data/review-5k.json) from h2load over ONE connection, one request at a time, on h2
# and on HTTP/1.1, alternating floor / irsa. irsa serves ServiceAccounts from a file holding
# the one annotated ServiceAccount the review's pod runs as.
#
# Instructions per request: each server runs under `valgrind --tool=callgrind` (instruction
# counts are deterministic, unlike wall time on this shared machine) twice per protocol: once
# answering BENCH_WARM requests, once BENCH_WARM + BENCH_REQUESTS, and
#   per request = (total of the long run - total of the short run) / BENCH_REQUESTS.
# The difference cancels startup, the readiness check, the TLS handshake and shutdown, and the
# first BENCH_WARM requests (allocator and connection buffers growing) are in both runs, so
# only steady-state requests count. This was chosen over callgrind's instrumentation toggle
# (`callgrind_control -i on`) because that command is only seen when a thread of the server
# runs, which makes the switch point racy against h2load. What does not cancel: work that
# grows with wall time (irsa checks its certificate files every 2 s), a few hundred
# instructions per request at valgrind speed.
#
# RSS (no valgrind): idle = VmRSS 1 s after one request; peak = VmHWM after BENCH_REQUESTS more
# over one h2 connection.
#
# Knobs (env): BENCH_PORT (18446, irsa), BENCH_METRICS_PORT (19092, irsa's admin port),
# BENCH_FLOOR_PORT (18447), BENCH_REQUESTS (2000), BENCH_WARM (200).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${BENCH_PORT:-18446}
MPORT=${BENCH_METRICS_PORT:-19092}
FPORT=${BENCH_FLOOR_PORT:-18447}
REQUESTS=${BENCH_REQUESTS:-2000}
WARM=${BENCH_WARM:-200}
REVIEW=benches/data/review-5k.json

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_require h2load valgrind openssl curl
bench_setup
FLOOR=$(cargo bench --locked --bench floor --no-run --message-format=json-render-diagnostics \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
[[ -x "$FLOOR" ]] || { echo "cannot find the floor bench binary" >&2; exit 1; }

cat > "$WORK/serviceaccounts.json" <<'JSON'
{"apiVersion":"v1","kind":"List","items":[{"metadata":{"namespace":"bench","name":"app","annotations":{"eks.amazonaws.com/role-arn":"arn:aws:iam::111122223333:role/bench-app","eks.amazonaws.com/sts-regional-endpoints":"true","irsa.dev/region":"eu-west-1"}}}]}
JSON

# start SERVER [WRAPPER...]: starts floor or irsa (under WRAPPER) and waits until it answers
# (60 s at most); sets PID and URL.
start() {
    local server=$1
    shift
    if [[ $server == irsa ]]; then
        bench_start_webhook "$WORK/serviceaccounts.json" "$@"
        URL="https://127.0.0.1:$PORT/mutate"
        return
    fi
    "$@" "$FLOOR" --listen "127.0.0.1:$FPORT" --cert "$WORK/tls.crt" --key "$WORK/tls.key" \
        2> "$WORK/floor.log" &
    PID=$!
    URL="https://127.0.0.1:$FPORT/mutate"
    for _ in $(seq 1 600); do
        curl -fsS -k -o /dev/null --data-binary "@$REVIEW" "$URL" 2>/dev/null && return
        kill -0 "$PID" 2>/dev/null || { cat "$WORK/floor.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "the floor server did not answer within 60 s" >&2
    exit 1
}

stop() {
    kill -TERM "$PID"
    wait "$PID"
    PID=""
}

# load N PROTO: N requests over one connection, one at a time; fails unless all got a 200.
load() {
    local flags=()
    [[ $2 == h1 ]] && flags=(--h1)
    h2load "${flags[@]}" -n "$1" -c 1 -m 1 -t 1 -H content-type:application/json -d "$REVIEW" "$URL" \
        > "$WORK/h2load.txt"
    grep -q "status codes: $1 2xx" "$WORK/h2load.txt" \
        || { cat "$WORK/h2load.txt" >&2; echo "not every request was answered with 2xx" >&2; exit 1; }
}

# instructions SERVER PROTO N: sets TOTAL to the instructions of SERVER's whole life answering
# N requests (in this shell, not a $(...) subshell, so that the EXIT trap still stops it).
instructions() {
    local out="$WORK/callgrind.$1.$2.$3"
    start "$1" valgrind --tool=callgrind --callgrind-out-file="$out"
    load "$3" "$2"
    stop
    TOTAL=$(sed -n 's/^totals: \([0-9]*\).*/\1/p; s/^summary: \([0-9]*\).*/\1/p' "$out" | head -n1)
}

# Sanity: irsa mutates the review; the floor answers with a patch too.
for server in floor irsa; do
    start "$server"
    curl -fsS -k --http2 -H 'content-type: application/json' --data-binary "@$REVIEW" "$URL" \
        | grep -q '"patchType":"JSONPatch"' || { echo "$server did not patch the review" >&2; exit 1; }
    sleep 1
    declare "IDLE_$server=$(proc_kb VmRSS)"
    load "$REQUESTS" h2
    declare "PEAK_$server=$(proc_kb VmHWM)"
    stop
done

declare -A PER
for proto in h2 h1; do
    for server in floor irsa; do
        echo "== callgrind: $server, $proto, $WARM and $((WARM + REQUESTS)) requests" >&2
        instructions "$server" "$proto" "$WARM"
        short=$TOTAL
        instructions "$server" "$proto" $((WARM + REQUESTS))
        PER[$server.$proto]=$(( (TOTAL - short) / REQUESTS ))
    done
done

echo
echo "== irsa webhook vs floor ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(wc -c < "$REVIEW")-byte review, $(date -u +%Y-%m-%d))"
echo "instructions per request: one connection, $REQUESTS requests after $WARM, callgrind"
echo "| protocol | floor | irsa webhook | irsa / floor |"
echo "|---|---|---|---|"
for proto in h2 h1; do
    awk -v p="$proto" -v f="${PER[floor.$proto]}" -v i="${PER[irsa.$proto]}" \
        'BEGIN { printf "| %s | %.0f k | %.0f k | %.2f× |\n", (p == "h1" ? "HTTP/1.1" : "h2"), f / 1000, i / 1000, i / f }'
done
echo
echo "| RSS | floor | irsa webhook |"
echo "|---|---|---|"
awk -v fi="$IDLE_floor" -v ii="$IDLE_irsa" -v fp="$PEAK_floor" -v ip="$PEAK_irsa" 'BEGIN {
    printf "| idle (after one request) | %.1f MiB | %.1f MiB |\n", fi / 1024, ii / 1024
    printf "| peak (after %s more over h2) | %.1f MiB | %.1f MiB |\n", "'"$REQUESTS"'", fp / 1024, ip / 1024
}'
