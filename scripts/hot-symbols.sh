#!/usr/bin/env bash
# Regenerates link/hot-symbols.txt: the functions `irsa webhook` executes, which the image's
# link (IRSA_IMAGE_LINK=1, build.rs) lays out first and together, so that the few MiB of code
# the webhook runs sit on as few pages as possible (issue 16; docs/development.md "Memory:
# where the webhook's RSS goes").
#
# Records, with `valgrind --tool=callgrind`, every function of the irsa executable that runs in
# `irsa webhook`'s life on a fresh local control plane (scripts/with-control-plane.sh):
#   - ServiceAccounts from the API server (the product's mode): start-up, the paged list and
#     the watch (one ServiceAccount annotated while it runs), admissions over h2 and HTTP/1.1,
#     one of them for a ServiceAccount the cache does not have (the GET of a miss), /healthz,
#     /readyz and /metrics, shutdown;
#   - ServiceAccounts from --service-accounts-file (the benchmarks' mode), 1,000 of them over
#     100 namespaces (the tables grow as with more): the same requests.
# The list is their union, one mangled symbol per line, without ThinLTO's `.llvm.<hash>`
# suffix (build.rs turns it into a linker script that matches the name with or without one).
# The names survive source edits (legacy and v0 mangling hash the crate's metadata and an
# instance's types, not code), but not changed types or new functions, and dependency or
# toolchain updates change them all. A function missing from the list is laid out as before
# and can cost a 64 KiB window of resident code: regenerate after changing the code the
# webhook runs, its dependencies or the toolchain. `bench_setup` (bench-lib.sh) reports how
# much of the list the binary still has and fails under 97 %.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${HOT_SYMBOLS_IN_PLANE:-}" ]]; then
    HOT_SYMBOLS_IN_PLANE=1 exec ./scripts/with-control-plane.sh "$0" "$@"
fi

PORT=${BENCH_PORT:-18449}
MPORT=${BENCH_METRICS_PORT:-19094}
REVIEW=benches/data/review-5k.json
OUT=link/hot-symbols.txt

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_require valgrind kubectl python3 curl openssl
HOT_SYMBOLS_UNCHECKED=1 bench_setup

kubectl create namespace bench >/dev/null
kubectl -n bench create serviceaccount app >/dev/null
kubectl -n bench annotate serviceaccount app >/dev/null \
    eks.amazonaws.com/role-arn=arn:aws:iam::111122223333:role/bench-app
bench_service_accounts 1000 1 > "$WORK/serviceaccounts.json"
sed 's/"serviceAccountName":"app"/"serviceAccountName":"not-there"/' "$REVIEW" > "$WORK/miss.json"

# exercise: what a running webhook does, over both protocols and both ports.
exercise() {
    local http
    for http in --http2 --http1.1; do
        curl -fsS -k "$http" -H 'content-type: application/json' --data-binary "@$REVIEW" \
            "https://127.0.0.1:$PORT/mutate" | grep '"patchType":"JSONPatch"' >/dev/null
    done
    for path in healthz readyz metrics; do
        curl -fsS -o /dev/null "http://127.0.0.1:$MPORT/$path"
    done
}

# record SOURCE: one webhook life under callgrind, ServiceAccounts from SOURCE (- or a file).
record() {
    bench_start_webhook "$1" valgrind --tool=callgrind --demangle=no \
        --callgrind-out-file="$WORK/callgrind.$2"
    exercise
    if [[ $1 == - ]]; then
        curl -fsS -k -o /dev/null -H 'content-type: application/json' \
            --data-binary "@$WORK/miss.json" "https://127.0.0.1:$PORT/mutate"
        kubectl -n bench annotate --overwrite serviceaccount app irsa.dev/region=eu-west-1 >/dev/null
        sleep 2
        exercise
    fi
    sleep 3 # the periodic work: certificate reload checks, metrics
    bench_stop
}
record - kube
record "$WORK/serviceaccounts.json" file

# The functions callgrind saw run in the executable itself (its `ob=`), by their symbol name:
# first those both lives ran, then those only the API-server life ran, then those only the
# file life ran, each group sorted. So each life's code is one or two runs of pages, not
# the two interleaved.
python3 - "$(readlink -f "$BIN")" "$WORK/callgrind.kube" "$WORK/callgrind.file" > "$WORK/hot.txt" <<'PY'
import re, sys

def executed(exe, path):
    objects, functions, current, hot = {}, {}, None, set()
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"(c?ob|c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if not m:
                continue
            kind, id_, name = m.groups()
            table = objects if kind.endswith("ob") else functions
            if name:
                table[id_] = name
            if kind == "ob":
                current = objects[id_]
            elif kind == "fn" and current == exe:
                hot.add(functions[id_])
    # Callgrind names code without a symbol by its address, which changes with every link, and
    # marks a recursive call's level with a suffix ('2). ThinLTO's `.llvm.<hash>` suffix changes
    # with any edit of the function's codegen unit (or the build's paths): the list keeps the
    # name without it, and build.rs's linker script matches both.
    hot = {re.sub(r"(\.llvm\.\d+)?('\d+)?$", "", n)
           for n in hot if not n.startswith("0x") and " " not in n}
    if len(hot) < 1000:
        sys.exit(f"{path}: only {len(hot)} functions: callgrind did not see the webhook run")
    return hot

kube, file = (executed(sys.argv[1], path) for path in sys.argv[2:])
print("# Generated by scripts/hot-symbols.sh (make hot-symbols), do not edit: the functions "
      "`irsa webhook` runs, laid out first by the image's link (build.rs).")
for title, group in [
    ("both lives", kube & file),
    ("ServiceAccounts from the API server only", kube - file),
    ("ServiceAccounts from a file only", file - kube),
]:
    print(f"# {title}: {len(group)}")
    print("\n".join(sorted(group)))
PY
mv "$WORK/hot.txt" "$OUT"
grep "^# .*: [0-9]*$" "$OUT"
