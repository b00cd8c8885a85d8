#!/usr/bin/env bash
# Memory price of one review: peak and settled RSS of `irsa webhook` for the
# largest review it accepts, and the cost of over-limit ones. All on 127.0.0.1; bounded
# loops; the server is stopped with SIGTERM at the end. Not a test: it prints numbers.
#
# Builds the release binary, starts `irsa webhook --service-accounts-file` (no Kubernetes),
# then, reading VmRSS / VmHWM from /proc/<pid>/status (the peak is reset between phases by
# writing 5 to /proc/<pid>/clear_refs):
#   1. idle RSS;
#   2. the largest accepted review: 1,000 containers (the container cap) padded to just under
#      the 3 MiB object cap, mutated: BENCH_RSS_ROUNDS sequential, then rounds of 4 at once;
#   3. over-limit reviews: 65,000 containers (2.85 MB, small in bytes, huge in work) and a 3.9 MB
#      object (over the object cap): answered unmutated with a warning.
# For each phase: response size, time, peak RSS, and RSS 2 s after.
#
# Knobs (env): BENCH_PORT (18444), BENCH_METRICS_PORT (19091), BENCH_RSS_ROUNDS (10).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${BENCH_PORT:-18444}
MPORT=${BENCH_METRICS_PORT:-19091}
ROUNDS=${BENCH_RSS_ROUNDS:-10}

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_require openssl curl python3
bench_setup

cat > "$WORK/serviceaccounts.json" <<'JSON'
{"apiVersion":"v1","kind":"List","items":[{"metadata":{"namespace":"bench","name":"app","annotations":{"eks.amazonaws.com/role-arn":"arn:aws:iam::111122223333:role/bench-app","irsa.dev/region":"eu-west-1"}}}]}
JSON

python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
MAX_OBJECT = 3 * 1024 * 1024

def review(uid, containers, pad=""):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "big-", "namespace": "bench"},
           "spec": {"serviceAccountName": "app", "containers": containers}}
    if pad:
        pod["metadata"]["annotations"] = {"pad": pad}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "namespace": "bench", "operation": "CREATE", "object": pod}}

def containers(n, env_pad=0):
    out = []
    for i in range(n):
        c = {"name": f"c{i}", "image": "x", "env": []}
        if env_pad:
            c["env"] = [{"name": "PAD", "value": "p" * env_pad}]
        out.append(c)
    return out

# Largest accepted: 1000 containers, each env padded so the object lands just under 3 MiB.
base = len(json.dumps(review("x", containers(1000, 1))["request"]["object"]))
pad = 1 + (MAX_OBJECT - 4096 - base) // 1000
largest = review("largest", containers(1000, pad))
obj = len(json.dumps(largest["request"]["object"]))
assert obj < MAX_OBJECT, obj
open(f"{work}/largest.json", "w").write(json.dumps(largest))
open(f"{work}/containers-65000.json", "w").write(json.dumps(review("c65k", containers(65000))))
open(f"{work}/object-3.9MB.json", "w").write(json.dumps(review("obj", containers(1), "a" * 3_900_000)))
PY

bench_start_webhook "$WORK/serviceaccounts.json"

reset_peak() { echo 5 > "/proc/$PID/clear_refs" 2>/dev/null || echo "(cannot reset VmHWM: peaks below are since start)" >&2; }
one() { # file expect -> prints "answer-bytes seconds"; expect: patch | warning
    local answer out code bytes secs
    answer=$(mktemp -p "$WORK")
    out=$(curl -sS -k -o "$answer" -w '%{http_code} %{size_download} %{time_total}' \
        -H 'content-type: application/json' --data-binary "@$1" "https://127.0.0.1:$PORT/mutate")
    read -r code bytes secs <<<"$out"
    [[ "$code" == 200 ]] || { echo "HTTP $code for $1" >&2; exit 1; }
    case "$2" in
        patch) grep -q '"patchType":"JSONPatch"' "$answer" || { echo "$1: no patch" >&2; exit 1; } ;;
        warning) grep -q 'more than the' "$answer" || { echo "$1: no limit warning" >&2; exit 1; } ;;
    esac
    rm -f "$answer"
    echo "$bytes $secs"
}

echo
printf '%-44s %s\n' "idle RSS" "$(mib "$(proc_kb VmRSS)")"

phase() { # label file expect rounds parallel
    local label=$1 file=$2 expect=$3 rounds=$4 parallel=$5 first
    reset_peak
    first=$(one "$file" "$expect")
    for _ in $(seq 2 "$rounds"); do one "$file" "$expect" >/dev/null; done
    if [[ "$parallel" -gt 1 ]]; then
        for _ in $(seq 1 "$rounds"); do
            local pids=()
            for _ in $(seq 1 "$parallel"); do one "$file" "$expect" >/dev/null & pids+=($!); done
            wait "${pids[@]}"
        done
    fi
    local peak; peak=$(proc_kb VmHWM)
    sleep 2
    printf '%-44s request %s B, answer %s B in %ss; peak %s, settled %s\n' \
        "$label" "$(stat -c %s "$file")" "${first% *}" "${first#* }" "$(mib "$peak")" "$(mib "$(proc_kb VmRSS)")"
}

phase "largest accepted (1000 containers, <3 MiB) x$ROUNDS" "$WORK/largest.json" patch "$ROUNDS" 1
phase "largest accepted, $ROUNDS rounds of 4 at once" "$WORK/largest.json" patch "$ROUNDS" 4
phase "over limit: 65,000 containers x$ROUNDS, then 4 at once" "$WORK/containers-65000.json" warning "$ROUNDS" 4
phase "over limit: 3.9 MB object x$ROUNDS, then 4 at once" "$WORK/object-3.9MB.json" warning "$ROUNDS" 4

echo
curl -fsS "http://127.0.0.1:$MPORT/metrics" | grep -E '^irsa_webhook_(requests_total|warnings_total)' || true
kill -TERM "$PID"; wait "$PID"; status=$?; PID=""
echo "exit status after SIGTERM: $status"
