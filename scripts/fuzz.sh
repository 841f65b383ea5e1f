#!/usr/bin/env bash
# Runs the fuzz targets (vdb-format, vdb-proto, vdb-fetch) in fuzz/ with cargo-fuzz (nightly toolchain).
#
#   scripts/fuzz.sh --build-only      build every target, dev profile (what CI runs)
#   scripts/fuzz.sh [target...]       fuzz each target (default: all) for FUZZ_SECONDS (30) s
#
# Exits non-zero if the build fails or any target finds a crash; the crashing input is left in
# fuzz/artifacts/<target>/ (reproduce with `cargo +nightly fuzz run <target> <file>`).
# Corpora accumulate in fuzz/corpus/<target>/ (gitignored).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALL_TARGETS=(header container info cdiff diff proto dnstxt retry_after sample clamsign segment_map)
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "error: cargo-fuzz on a nightly toolchain is required:" >&2
    echo "  rustup toolchain install nightly && cargo install cargo-fuzz --locked" >&2
    exit 2
fi

if [[ "${1:-}" == "--build-only" ]]; then
    # A dev build compiles every target as a fuzzing run would (sanitizer flags included) in
    # about 60 % of a release build's time; runs below use release builds.
    exec cargo +nightly fuzz build --dev
fi

if ! [[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: FUZZ_SECONDS must be a positive integer, got '$SECONDS_PER_TARGET'" >&2
    exit 2
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=("${ALL_TARGETS[@]}")
fi

dict_for() {
    case "$1" in
        header | info | container) echo fuzz/dicts/vdb.dict ;;
        *) echo "fuzz/dicts/$1.dict" ;;
    esac
}

failed=()
for target in "${targets[@]}"; do
    echo "=== fuzzing $target for ${SECONDS_PER_TARGET}s"
    extra=()
    dict="$(dict_for "$target")"
    if [[ -f "$dict" ]]; then
        # Absolute, so it does not matter which directory libFuzzer runs in.
        extra+=("-dict=$PWD/$dict")
    fi
    if ! cargo +nightly fuzz run "$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -print_final_stats=1 \
        ${extra[@]+"${extra[@]}"}; then
        echo "=== $target FAILED (see fuzz/artifacts/$target/)" >&2
        failed+=("$target")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzzing found failures in: ${failed[*]}" >&2
    exit 1
fi
echo "=== all targets ran ${SECONDS_PER_TARGET}s without a crash"
