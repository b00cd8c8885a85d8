#!/usr/bin/env bash
# Coverage-guided fuzzing of irsa's untrusted-input parsers (fuzz/, cargo-fuzz + libFuzzer).
#
#   scripts/fuzz.sh                  every target, FUZZ_SECONDS (60) each
#   FUZZ_SECONDS=3600 scripts/fuzz.sh admission_review
#
# Needs a nightly toolchain (cargo-fuzz passes -Z flags); installs cargo-fuzz if missing.
# Seeds are checked in under fuzz/seeds/<target>/; what libFuzzer learns goes to
# fuzz/corpus/<target>/ (kept between runs, not committed), crashes to fuzz/artifacts/<target>/.
# FUZZ_SANITIZER=none by default: irsa forbids unsafe code, so libFuzzer's panic, timeout
# and memory-limit detection is what matters; FUZZ_SANITIZER=address for a slower ASan run.
# Prints one line per target (executions, new corpus size, crashed or not); exits 1 if any
# target crashed.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
SANITIZER="${FUZZ_SANITIZER:-none}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
ALL_TARGETS=(admission_review mutate_input trust_policy doctor_token)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")

if ! rustup toolchain list | grep -q "^$TOOLCHAIN"; then
    echo "fuzz: installing the $TOOLCHAIN toolchain (cargo-fuzz needs -Z flags)" >&2
    rustup toolchain install "$TOOLCHAIN" --profile minimal
fi
if ! cargo +"$TOOLCHAIN" fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo +"$TOOLCHAIN" install cargo-fuzz --locked
fi

echo "fuzz: building ${TARGETS[*]} (sanitizer: $SANITIZER)" >&2
for t in "${TARGETS[@]}"; do
    cargo +"$TOOLCHAIN" fuzz build --sanitizer "$SANITIZER" "$t" >&2
done

mkdir -p logs
summary=()
failed=0
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t"
    log="logs/$t.log"
    echo "fuzz: $t for ${SECONDS_PER_TARGET}s (log: fuzz/$log)" >&2
    set +e
    cargo +"$TOOLCHAIN" fuzz run --sanitizer "$SANITIZER" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    corpus=$(find "corpus/$t" -type f | wc -l)
    if [ "$status" -eq 0 ]; then
        verdict="no crash"
    else
        verdict="CRASHED (exit $status; see fuzz/$log and fuzz/artifacts/$t/)"
        failed=1
    fi
    summary+=("$(printf '%-18s %12s executions in %ss, corpus %5s inputs, %s' "$t" "${runs:-?}" "$SECONDS_PER_TARGET" "$corpus" "$verdict")")
done

echo
printf '%s\n' "${summary[@]}"
exit "$failed"
