# Sourced by the webhook benchmarks (bench-webhook.sh, bench-rss.sh, bench-floor.sh): the tools
# they need, the release binary, a work directory removed on exit (the webhook stopped first),
# a self-signed certificate for 127.0.0.1, `irsa webhook` started in its file mode and waited
# for, and /proc readings.
# Expects PORT and MPORT to be set.

# bench_require TOOL...: exits naming the first tool not on PATH (and the package of h2load).
bench_require() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null && continue
        local hint=""
        [[ $tool == h2load ]] && hint=" (apt-get install -y nghttp2-client)"
        echo "$tool not found$hint" >&2
        exit 1
    done
}

bench_setup() {
    cargo build --release --locked --bin irsa
    BIN=${CARGO_TARGET_DIR:-target}/release/irsa
    WORK=$(mktemp -d)
    PID=""
    trap bench_cleanup EXIT
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
}

bench_cleanup() {
    if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" || true; fi
    rm -rf "$WORK"
}

# bench_start_webhook SERVICE_ACCOUNTS_FILE [WRAPPER...]: starts the webhook (under WRAPPER,
# e.g. valgrind, if given), waits (60 s at most: valgrind starts it slowly) for /readyz.
bench_start_webhook() {
    local sa_file=$1
    shift
    "$@" "$BIN" webhook --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$MPORT" \
        --tls-cert-file "$WORK/tls.crt" --tls-key-file "$WORK/tls.key" \
        --service-accounts-file "$sa_file" --log-format json \
        2> "$WORK/webhook.log" &
    PID=$!
    for _ in $(seq 1 600); do
        curl -fsS "http://127.0.0.1:$MPORT/readyz" >/dev/null 2>&1 && break
        kill -0 "$PID" 2>/dev/null || { cat "$WORK/webhook.log" >&2; exit 1; }
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$MPORT/readyz" >/dev/null
}

# proc_kb FIELD: the webhook's /proc/PID/status value in kB (VmRSS, VmHWM).
proc_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$PID/status"; }
