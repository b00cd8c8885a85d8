# shellcheck shell=bash
# Sourced by the benchmarks (bench-webhook.sh, bench-rss.sh, bench-floor.sh, bench-sa-watch.sh;
# bench-pods-rss.sh uses only bench_require and the /proc readings): the tools they need, the
# release binary, a work directory removed on exit (the webhook stopped first), a self-signed
# certificate for 127.0.0.1, `irsa webhook` started (from a file or an API server), waited for
# and stopped, and /proc readings.
# bench_setup and bench_start_webhook expect PORT and MPORT to be set.

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
    # Linked as the image's build links it (Dockerfile, build.rs); exported, so that the
    # scripts' other cargo commands do not relink the binary without it.
    export IRSA_IMAGE_LINK=1
    cargo build --release --locked --bin irsa
    WORK=$(mktemp -d)
    PID=""
    trap bench_cleanup EXIT
    # Held by a second name: `cargo bench` (bench-floor.sh builds the floor with it) puts its
    # own build of the binary at the same path. A hard link where it can be: a copy's page
    # cache is made of cp's writes, and the kernel then maps its code in larger pieces (about
    # +0.4 MiB of RSS, measured), where the linker's output, like a binary read back from
    # disk, does not.
    BIN=$WORK/irsa
    ln "${CARGO_TARGET_DIR:-target}/release/irsa" "$BIN" 2>/dev/null \
        || cp "${CARGO_TARGET_DIR:-target}/release/irsa" "$BIN"
    # Not `grep -q`: it exits at the first match, and readelf's SIGPIPE then fails the pipe.
    readelf -S "$BIN" | grep '\.relr\.dyn' >/dev/null \
        || { echo "$BIN has no .relr.dyn: not linked as the image is (build.rs)" >&2; exit 1; }
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
}

bench_cleanup() {
    if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" || true; fi
    rm -rf "$WORK"
}

# bench_start_webhook SERVICE_ACCOUNTS_FILE [WRAPPER...]: starts the webhook (under WRAPPER,
# e.g. valgrind, if given), waits (bench_wait: 60 s at most, valgrind starts it slowly) for /readyz. "-" for
# the file: the ServiceAccounts come from the API server of KUBECONFIG.
bench_start_webhook() {
    local sa_flags=(--service-accounts-file "$1")
    [[ $1 == - ]] && sa_flags=()
    shift
    "$@" "$BIN" webhook --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$MPORT" \
        --tls-cert-file "$WORK/tls.crt" --tls-key-file "$WORK/tls.key" \
        "${sa_flags[@]}" --log-format json \
        2> "$WORK/webhook.log" &
    PID=$!
    bench_wait bench_readyz
}

bench_readyz() { curl -fsS "http://127.0.0.1:$MPORT/readyz" >/dev/null 2>&1; }

# bench_wait CHECK...: runs CHECK every 0.1 s until it succeeds, 60 s at most; exits, with the
# server's log ($WORK/webhook.log), when the server started last (PID) exits first or the time is
# up.
bench_wait() {
    local _
    for _ in $(seq 1 600); do
        "$@" && return 0
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    "$@" && return 0
    echo "not ready: $*" >&2
    cat "$WORK/webhook.log" >&2
    exit 1
}

# bench_controller_setup: for the controller's benchmarks (bench-pods-rss.sh,
# bench-controller.sh): a work directory, the release binary as BIN (BENCH_IRSA_BIN when given;
# a copy, since a shared target directory may get another checkout's binary meanwhile), moto for
# IAM and STS on 127.0.0.1:MOTO_PORT, answering, with the AWS SDK's credentials exported for it,
# and an EXIT trap that stops the controller (PID) and moto and removes the work directory.
bench_controller_setup() {
    WORK=$(mktemp -d)
    if [[ -n "${BENCH_IRSA_BIN:-}" ]]; then
        cp "$BENCH_IRSA_BIN" "$WORK/irsa"
    else
        cargo build --release --locked --bin irsa
        cp "${CARGO_TARGET_DIR:-target}/release/irsa" "$WORK/irsa"
    fi
    BIN=$WORK/irsa
    PID=""
    MOTO=""
    trap bench_controller_cleanup EXIT
    export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
    moto_server -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
    MOTO=$!
    local _
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "moto did not answer on 127.0.0.1:$MOTO_PORT" >&2
    cat "$WORK/moto.log" >&2
    exit 1
}

bench_controller_cleanup() {
    local pid
    for pid in "$PID" "$MOTO"; do
        if [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; fi
    done
    rm -rf "$WORK"
}

# bench_service_accounts N EVERY: a List of N ServiceAccounts over 100 namespaces, every EVERY-th
# annotated with a role (1: all of them), on stdout; the first is bench/app, annotated, the one
# the benchmark review's pod runs as. JSON: the YAML parser's node budget stops short of 100k
# manifests.
bench_service_accounts() {
    awk -v n="$1" -v every="$2" 'BEGIN {
        printf "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n"
        printf "{\"metadata\":{\"namespace\":\"bench\",\"name\":\"app\",\"annotations\":{\"eks.amazonaws.com/role-arn\":\"arn:aws:iam::111122223333:role/bench-app\",\"eks.amazonaws.com/sts-regional-endpoints\":\"true\",\"irsa.dev/region\":\"eu-west-1\"}}}"
        for (i = 1; i < n; i++) {
            if (i % every == 0)
                printf ",\n{\"metadata\":{\"namespace\":\"ns-%d\",\"name\":\"sa-%d\",\"annotations\":{\"eks.amazonaws.com/role-arn\":\"arn:aws:iam::111122223333:role/r-%d\"}}}", i % 100, i, i
            else
                printf ",\n{\"metadata\":{\"namespace\":\"ns-%d\",\"name\":\"sa-%d\"}}", i % 100, i
        }
        printf "\n]}\n"
    }'
}

# bench_latency LOG: "p50 p99 count" in ms of the answered (200) requests of an h2load
# --log-file (tab-separated: start time, status, elapsed microseconds).
bench_latency() {
    awk -F'\t' '$2 == 200 { print $3 }' "$1" | sort -n \
        | awk '{ v[NR] = $1 } END { i50 = int(NR * 0.50); if (i50 < 1) i50 = 1; i99 = int(NR * 0.99); if (i99 < 1) i99 = 1; printf "%.3f %.3f %d\n", v[i50] / 1000, v[i99] / 1000, NR }'
}

# bench_stop: stops the server started last (SIGTERM) and waits for it; fails if it fails.
bench_stop() {
    kill -TERM "$PID"
    wait "$PID"
    PID=""
}

# proc_kb FIELD: the webhook's /proc/PID/status value in kB (VmRSS, VmHWM).
proc_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$PID/status"; }

# exe_file_kb: the kB of the process's own executable mapped from the file (smaps Rss minus
# Anonymous of its mappings: code and read-only data, not the relocated data copied on write).
exe_file_kb() {
    awk -v exe="$(readlink "/proc/$PID/exe")" '
        /^[0-9a-f]+-/ { own = ($6 == exe) }
        own && $1 == "Rss:" { kb += $2 }
        own && $1 == "Anonymous:" { kb -= $2 }
        END { print kb + 0 }' "/proc/$PID/smaps"
}

# mib KB: "12.3 MiB".
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
