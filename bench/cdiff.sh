#!/usr/bin/env bash
# cdiff-chain benchmark: applying a long chain of large cdiffs to the synthetic 60 MiB daily
# database, vdb against the real `sigtool --run-cdiff` on the same scripts, plus the bytes a
# daily update downloads through cdiffs against a whole-CVD download.
#
#   bench/cdiff.sh                  # everything; results in bench/out/results-cdiff.txt
#   CHAIN=20 bench/cdiff.sh         # chain length (default 10)
#   RUNS=5 SIZE_MB=10 FRESH=1 ...   # as in bench/verify.sh
#
# Needs: cargo, GNU time, sigtool (ClamAV), python3 (to take the script out of a signed cdiff
# for sigtool), gzip, tar. Never exits non-zero because a goal is missed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/bench/out}
RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-60}
SEED=${SEED:-1}
CHAIN=${CHAIN:-10}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VDB=$TARGET_DIR/release/vdb
NAME=cdiff.sh
SCRATCH=$OUT/scratch-cdiff
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need_tools cargo sigtool python3 gzip tar tail awk sort

mkdir -p "$OUT"
echo "== building vdb (release)" >&2
(cd "$ROOT" && cargo build --release --locked -p vdb-cli --bin vdb) >&2

SYNTH=$OUT/synth-chain
synth_db "$SYNTH" --size-mb "$SIZE_MB" --cdiffs "$CHAIN" --seed "$SEED"
KEYS=$SYNTH/synth.key.pub
BASE_V=$(cd "$SYNTH" && ls daily-*.cvd | sed 's/daily-\([0-9]*\)\.cvd/\1/' | sort -n | head -1)
NEW_V=$((BASE_V + CHAIN))
BASE=$SYNTH/daily-$BASE_V.cvd
CDIFFS=()
for ((v = BASE_V + 1; v <= NEW_V; v++)); do CDIFFS+=("$SYNTH/daily-$v.cdiff"); done

# sigtool --run-cdiff only verifies cdiffs signed with ClamAV's official key, so it gets the
# scripts themselves (the gzip member between the ASCII header and the signature trailer), and the
# base unpacked by stock tools (the synthetic CVD is signed with our own key set). Preparing them is
# not timed; vdb's timing includes every check sigtool is spared (base RSA + MD5, every cdiff's
# RSA-PSS signature, the .info DSIG and hashes of the result) and writing a CLD.
SCRIPTS=$OUT/scripts-cdiff
rm -rf "$SCRIPTS" && mkdir -p "$SCRIPTS/base"
tail -c +513 "$BASE" | gzip -dc | tar -x -C "$SCRIPTS/base"
for c in "${CDIFFS[@]}"; do
    python3 - "$c" "$SCRIPTS/$(basename "$c" .cdiff).script" <<'PY'
import sys, zlib
data = open(sys.argv[1], "rb").read()
start = data.index(b":", data.index(b":", data.index(b":") + 1) + 1) + 1   # after "ClamAV-Diff:N:len:"
d = zlib.decompressobj(16 + zlib.MAX_WBITS)
script = d.decompress(data[start:])
assert d.eof, "gzip member not complete"
open(sys.argv[2], "wb").write(script)
PY
done

prepare() {
    if [[ $1 == sigtool* ]]; then cp -a "$SCRIPTS/base/." .; fi
}
run_sigtool_chain() {
    local s
    for s in "$@"; do sigtool --run-cdiff="$s" >/dev/null || return 1; done
}
export -f run_sigtool_chain

: >"$OUT/raw-$NAME.tsv"
echo "== measuring ($RUNS runs each, median wall time)" >&2
measure "vdb db apply (verify + apply + CLD)" @RUN@ \
    "$VDB" db apply --keys "$KEYS" "$BASE" "${CDIFFS[@]}" -o out.cld
measure "sigtool --run-cdiff x$CHAIN (apply only)" @RUN@ \
    bash -c 'run_sigtool_chain "$@"' sh "$SCRIPTS"/daily-*.script
rm -rf "$SCRATCH"

CVD_BYTES=$(stat -c %s "$SYNTH/daily.cvd")
ONE_CDIFF=$(stat -c %s "$SYNTH/daily-$NEW_V.cdiff")
ALL_CDIFF=0
for c in "${CDIFFS[@]}"; do ALL_CDIFF=$((ALL_CDIFF + $(stat -c %s "$c"))); done
{
    echo "cdiff-chain benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    machine_line
    echo "database: $STAMP; base daily-$BASE_V.cvd $(stat -c %s "$BASE") bytes, chain of $CHAIN cdiffs to $NEW_V"
    echo "versions: $("$VDB" --version 2>/dev/null || echo vdb), $(sigtool --version)"
    echo
    S=${MED["sigtool --run-cdiff x$CHAIN (apply only)"]}
    printf '| %-40s | %9s | %12s | %10s |\n' command "median s" "peak RSS MB" "/ sigtool"
    printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" "-----------" "--------------" "------------"
    for l in "${LABELS[@]}"; do
        printf '| %-40s | %9s | %12s | %10s |\n' "$l" "${MED[$l]}" "$(mb "${RSS[$l]}")" "$(ratio "${MED[$l]}" "$S")"
    done
    echo
    echo "bytes for one daily update: cdiff $ONE_CDIFF vs whole daily.cvd $CVD_BYTES ($(ratio "$ONE_CDIFF" "$CVD_BYTES")x)"
    echo "bytes for the whole chain:  cdiffs $ALL_CDIFF vs whole daily.cvd $CVD_BYTES ($(ratio "$ALL_CDIFF" "$CVD_BYTES")x)"
    echo
    echo "goals:"
    A=${MED["vdb db apply (verify + apply + CLD)"]}
    printf '  %-4s vdb applies the chain in half of sigtool'"'"'s time or less (%sx)\n' \
        "$(verdict le "$(ratio "$A" "$S")" 0.5)" "$(ratio "$A" "$S")"
    printf '  %-4s vdb peak memory bounded: under 128 MB (%s MB)\n' \
        "$(verdict lt "${RSS["vdb db apply (verify + apply + CLD)"]}" $((128 * 1024)))" \
        "$(mb "${RSS["vdb db apply (verify + apply + CLD)"]}")"
} | tee "$OUT/results-cdiff.txt"
echo "(raw timings: $OUT/raw-$NAME.tsv)" >&2
