#!/usr/bin/env bash
# `irsa webhook` beside its floor, in one run, all on 127.0.0.1; stops by itself.
#
# The floor (benches/floor.rs) is the least an HTTPS admission server on the same stack can
# do: axum + rustls (aws-lc-rs), same TLS configuration, reads the body, parses it into
# serde_json::Value, answers a constant patch. Both servers get the same review
# (benches/data/review-5k.json) from h2load, on h2 and on HTTP/1.1, alternating floor / irsa.
# irsa serves ServiceAccounts from a file holding the one annotated ServiceAccount the
# review's pod runs as.
#
# 1. Instructions per request, over ONE connection, one request at a time: each server runs
# under `valgrind --tool=callgrind` (instruction counts are deterministic, unlike wall time on
# a shared machine) twice per protocol: once answering BENCH_WARM requests, once BENCH_WARM +
# BENCH_REQUESTS, and
#   per request = (total of the long run - total of the short run) / BENCH_REQUESTS.
# The difference cancels startup, the readiness check, the TLS handshake and shutdown, and the
# first BENCH_WARM requests (allocator and connection buffers growing) are in both runs, so
# only steady-state requests count. This was chosen over callgrind's instrumentation toggle
# (`callgrind_control -i on`) because that command is only seen when a thread of the server
# runs, which makes the switch point racy against h2load. What does not cancel: work that
# grows with wall time (irsa checks its certificate files every 2 s), a few hundred
# instructions per request at valgrind speed.
#
# 2. Wall clock, BENCH_ROUNDS rounds alternating floor / irsa, the server pinned to CPU
# BENCH_SERVER_CPU and h2load to BENCH_CLIENT_CPU (taskset): throughput at saturation
# (BENCH_SECONDS; h2: 16 connections x 16 streams, HTTP/1.1: 16 connections), the server's CPU
# time per request over that run (utime + stime from /proc), then p50/p99 at 1,000 req/s
# (10 connections x 100 req/s, client side, from h2load's log). Medians over the rounds. Wall
# time moves with whatever else the machine runs: compare floor and irsa of the same run only.
#
# 3. RSS (no valgrind): idle = VmRSS 1 s after one request, split into its anonymous part
# (RssAnon: heap, stacks, relocated data), the executable's pages mapped from the file, and the
# shared libraries' pages (the kernel maps file pages around each one touched, 64 KiB by
# default: these follow the code's layout as much as what runs); the same with
# 10,000 ServiceAccounts, all annotated, in the file (irsa only), and the growth of anonymous
# memory per annotated ServiceAccount; peak = VmHWM after the wall-clock rounds of a protocol.
#
# Knobs (env): BENCH_PORT (18446, irsa), BENCH_METRICS_PORT (19092, irsa's admin port),
# BENCH_FLOOR_PORT (18447), BENCH_REQUESTS (2000), BENCH_WARM (200), BENCH_SECONDS (10),
# BENCH_ROUNDS (3; 0 skips the wall-clock part), BENCH_SERVER_CPU (1), BENCH_CLIENT_CPU (0),
# KEEP (a directory: the callgrind profiles are copied there, for
# `callgrind_annotate --inclusive=yes FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${BENCH_PORT:-18446}
MPORT=${BENCH_METRICS_PORT:-19092}
FPORT=${BENCH_FLOOR_PORT:-18447}
REQUESTS=${BENCH_REQUESTS:-2000}
WARM=${BENCH_WARM:-200}
SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
SERVER_CPU=${BENCH_SERVER_CPU:-1}
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
N_SA=10000
REVIEW=benches/data/review-5k.json

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_require h2load valgrind openssl curl taskset
bench_setup
# The floor's own artifact: cargo also builds (and reports) the irsa binary for the benches.
FLOOR=$(cargo bench --locked --bench floor --no-run --message-format=json-render-diagnostics \
    | grep '"kind":\["bench"\]' | grep '"name":"floor"' \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
[[ -x "$FLOOR" ]] || { echo "cannot find the floor bench binary" >&2; exit 1; }

bench_service_accounts 1 1 > "$WORK/serviceaccounts.json"
bench_service_accounts "$N_SA" 1 > "$WORK/serviceaccounts-$N_SA.json"
SA_FILE="$WORK/serviceaccounts.json"

# start SERVER [WRAPPER...]: starts floor or irsa (under WRAPPER) and waits until it answers
# (60 s at most); sets PID and URL.
start() {
    local server=$1
    shift
    if [[ $server == irsa ]]; then
        bench_start_webhook "$SA_FILE" "$@"
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
    bench_stop
    TOTAL=$(sed -n 's/^totals: \([0-9]*\).*/\1/p; s/^summary: \([0-9]*\).*/\1/p' "$out" | head -n1)
    if [[ -n "${KEEP:-}" ]]; then mkdir -p "$KEEP" && cp "$out" "$KEEP/"; fi
}

# cpu_ticks: the server's user + system time so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }

# median VALUES...: the middle one (the lower middle of an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Sanity: irsa mutates the review; the floor answers with a patch too. Idle RSS.
for server in floor irsa; do
    start "$server"
    curl -fsS -k --http2 -H 'content-type: application/json' --data-binary "@$REVIEW" "$URL" \
        | grep -q '"patchType":"JSONPatch"' || { echo "$server did not patch the review" >&2; exit 1; }
    sleep 1
    declare "IDLE_$server=$(proc_kb VmRSS)" "ANON_$server=$(proc_kb RssAnon)" \
        "EXE_$server=$(exe_file_kb)"
    bench_stop
done
SA_FILE="$WORK/serviceaccounts-$N_SA.json"
start irsa
curl -fsS -k -o /dev/null -H 'content-type: application/json' --data-binary "@$REVIEW" "$URL"
sleep 1
IDLE_MANY=$(proc_kb VmRSS)
ANON_MANY=$(proc_kb RssAnon)
bench_stop
SA_FILE="$WORK/serviceaccounts.json"

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

# saturate PROTO: sets RPS and CPU_US (server CPU µs per request) of a BENCH_SECONDS run.
saturate() {
    local flags=(-c 16 -m 16)
    [[ $1 == h1 ]] && flags=(--h1 -c 16 -m 1)
    taskset -c "$CLIENT_CPU" h2load "${flags[@]}" -D 2 -t 1 -H content-type:application/json \
        -d "$REVIEW" "$URL" > /dev/null
    local before; before=$(cpu_ticks)
    taskset -c "$CLIENT_CPU" h2load "${flags[@]}" -D "$SECS" -t 1 -H content-type:application/json \
        -d "$REVIEW" "$URL" > "$WORK/sat.txt"
    local ticks=$(( $(cpu_ticks) - before ))
    local done
    done=$(awk '/^requests:/ { print $8 }' "$WORK/sat.txt")
    [[ "$done" -gt 0 ]] || { cat "$WORK/sat.txt" >&2; echo "no request succeeded" >&2; exit 1; }
    RPS=$(awk -v n="$done" -v s="$SECS" 'BEGIN { printf "%.0f", n / s }')
    CPU_US=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$done" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
}

# at_rate PROTO: sets P50 and P99 (ms, client side) at 1,000 req/s for BENCH_SECONDS.
at_rate() {
    local flags=()
    [[ $1 == h1 ]] && flags=(--h1)
    taskset -c "$CLIENT_CPU" h2load "${flags[@]}" -D "$SECS" -c 10 -m 1 -t 1 --rps 100 \
        --log-file "$WORK/rps.log" -H content-type:application/json -d "$REVIEW" "$URL" > /dev/null
    read -r P50 P99 _ < <(bench_latency "$WORK/rps.log")
}

declare -A WALL
if [[ $ROUNDS -gt 0 ]]; then
    for proto in h2 h1; do
        for round in $(seq 1 "$ROUNDS"); do
            for server in floor irsa; do
                echo "== wall clock: $server, $proto, round $round of $ROUNDS" >&2
                start "$server" taskset -c "$SERVER_CPU"
                saturate "$proto"
                at_rate "$proto"
                WALL[$server.$proto.rps]+=" $RPS"
                WALL[$server.$proto.cpu]+=" $CPU_US"
                WALL[$server.$proto.p50]+=" $P50"
                WALL[$server.$proto.p99]+=" $P99"
                WALL[$server.$proto.peak]+=" $(proc_kb VmHWM)"
                bench_stop
            done
        done
    done
fi

proto_name() { [[ $1 == h1 ]] && echo HTTP/1.1 || echo h2; }
# row LABEL PROTO FLOOR IRSA: a table row with the ratio irsa / floor.
row() {
    awk -v l="$1" -v p="$(proto_name "$2")" -v f="$3" -v i="$4" \
        'BEGIN { printf "| %s | %s | %s | %s | %.2f× |\n", l, p, f, i, (f > 0 ? i / f : 0) }'
}

echo
echo "== irsa webhook vs floor ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(wc -c < "$REVIEW")-byte review, $(date -u +%Y-%m-%d))"
echo "| measure | protocol | floor | irsa webhook | irsa / floor |"
echo "|---|---|---|---|---|"
for proto in h2 h1; do
    row "instructions per request (callgrind, 1 connection, $REQUESTS after $WARM)" "$proto" \
        "$(( PER[floor.$proto] / 1000 )) k" "$(( PER[irsa.$proto] / 1000 )) k"
done
if [[ $ROUNDS -gt 0 ]]; then
    for proto in h2 h1; do
        for m in rps cpu p50 p99; do
            # shellcheck disable=SC2086 # the rounds' values, one word each
            f=$(median ${WALL[floor.$proto.$m]})
            # shellcheck disable=SC2086
            i=$(median ${WALL[irsa.$proto.$m]})
            case $m in
                rps) label="throughput at saturation, server on 1 core (req/s)" ;;
                cpu) label="server CPU per request at saturation (µs)" ;;
                p50) label="p50 at 1,000 req/s, client side (ms)" ;;
                p99) label="p99 at 1,000 req/s, client side (ms)" ;;
            esac
            row "$label" "$proto" "$f" "$i"
        done
    done
    echo "(wall clock: medians of $ROUNDS rounds of ${SECS} s, server on CPU $SERVER_CPU, h2load on CPU $CLIENT_CPU)"
fi
echo
echo "| RSS | floor | irsa webhook |"
echo "|---|---|---|"
echo "| idle (1 s after one request) | $(mib "$IDLE_floor") | $(mib "$IDLE_irsa") |"
echo "| of which anonymous (heap, stacks, relocated data) | $(mib "$ANON_floor") | $(mib "$ANON_irsa") |"
echo "| of which the executable's pages mapped from the file | $(mib "$EXE_floor") | $(mib "$EXE_irsa") |"
echo "| of which shared libraries (libc, libm, ld.so, libgcc_s) | $(mib $((IDLE_floor - ANON_floor - EXE_floor))) | $(mib $((IDLE_irsa - ANON_irsa - EXE_irsa))) |"
echo "| idle with $N_SA annotated ServiceAccounts (anonymous) | | $(mib "$IDLE_MANY") ($(mib "$ANON_MANY")) |"
awk -v a="$ANON_irsa" -v b="$ANON_MANY" -v n="$N_SA" \
    'BEGIN { printf "| growth per annotated ServiceAccount | | %.0f bytes |\n", (b - a) * 1024 / (n - 1) }'
if [[ $ROUNDS -gt 0 ]]; then
    for proto in h2 h1; do
        # shellcheck disable=SC2086
        echo "| peak (after the $(proto_name "$proto") wall-clock rounds) | $(mib "$(median ${WALL[floor.$proto.peak]})") | $(mib "$(median ${WALL[irsa.$proto.peak]})") |"
    done
fi
