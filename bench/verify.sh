#!/usr/bin/env bash
# Verify/unpack benchmark: vdb against real sigtool and against a floor (md5 + gunzip + tar),
# on the synthetic 60 MiB daily database made by `vdb db synth`.
#
#   bench/verify.sh                 # everything; results in bench/out/results.txt
#   RUNS=5 bench/verify.sh          # more runs per command (the median is reported)
#   SIZE_MB=10 bench/verify.sh      # a smaller database (cached separately by its arguments)
#   FRESH=1 bench/verify.sh         # regenerate the database even if cached
#
# Needs: cargo, GNU time (/usr/bin/time; `apt-get install time`), sigtool (ClamAV), gzip,
# tar, md5sum. Never exits non-zero because a goal is missed; only on a broken setup.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-3}
CDIFFS=${CDIFFS:-3}
NAME=verify.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
SCRATCH=$OUT/scratch
need_tools cargo sigtool gzip tar md5sum tail awk sort

mkdir -p "$OUT"
echo "== building vdb (release)" >&2
(cd "$ROOT" && cargo build --release --locked -p vdb-cli) >&2

# --- the database (cached by its arguments) --------------------------------------------------
SYNTH=$OUT/synth
synth_db "$SYNTH" --size-mb "$SIZE_MB" --cdiffs "$CDIFFS" --seed "$SEED" --cud
[[ -f $SYNTH/daily.cud ]] || die "$SYNTH/daily.cud is missing (FRESH=1 rebuilds)"
CVD=$SYNTH/daily.cvd
CUD=$SYNTH/daily.cud
KEYS=$SYNTH/synth.key.pub
"$VDB" db verify --keys "$KEYS" "$CVD" >/dev/null || die "$CVD does not verify"

# Warm the page cache so that every command reads from memory.
cat "$CVD" "$CUD" >/dev/null

# --- measuring -------------------------------------------------------------------------------
: >"$OUT/raw-$NAME.tsv"

echo "== measuring ($RUNS runs each, median wall time)" >&2
measure "vdb db verify daily.cvd" "$SYNTH" \
    "$VDB" db verify --keys "$KEYS" "$CVD"
measure "vdb db unpack daily.cvd" "$SYNTH" \
    "$VDB" db unpack --keys "$KEYS" "$CVD" @DIR@
measure "vdb db unpack daily.cud" "$SYNTH" \
    "$VDB" db unpack "$CUD" @DIR@
measure "sigtool --unpack daily.cud" @RUN@ \
    sigtool --unpack "$CUD"
measure "floor: md5sum + gunzip | tar -t" "$SYNTH" \
    sh -c 'md5sum "$1" >/dev/null && tail -c +513 "$1" | gzip -dc | tar -t >/dev/null' sh "$CVD"
# Not goals: the two halves of the floor, to show where its time goes.
measure "  (floor part: md5sum)" "$SYNTH" \
    md5sum "$CVD"
measure "  (floor part: gunzip | tar -t)" "$SYNTH" \
    sh -c 'tail -c +513 "$1" | gzip -dc | tar -t >/dev/null' sh "$CVD"
rm -rf "$SCRATCH"

# --- report ----------------------------------------------------------------------------------
SIG=${MED["sigtool --unpack daily.cud"]}
FLOOR=${MED["floor: md5sum + gunzip | tar -t"]}

{
    echo "vdb verify/unpack benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    machine_line
    echo "database: $STAMP -> daily.cvd $(stat -c %s "$CVD") bytes, daily.cud $(stat -c %s "$CUD") bytes"
    echo "versions: $("$VDB" --version 2>/dev/null || echo vdb), $(sigtool --version)"
    echo
    printf '| %-34s | %9s | %12s | %10s | %9s |\n' command "median s" "peak RSS MB" "/ sigtool" "/ floor"
    printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" "-----------" "--------------" "------------" "-----------"
    for l in "${LABELS[@]}"; do
        printf '| %-34s | %9s | %12s | %10s | %9s |\n' "$l" "${MED[$l]}" "$(mb "${RSS[$l]}")" \
            "$(ratio "${MED[$l]}" "$SIG")" "$(ratio "${MED[$l]}" "$FLOOR")"
    done
    echo
    echo "goals:"
    V=${MED["vdb db verify daily.cvd"]}
    U=${MED["vdb db unpack daily.cvd"]}
    UC=${MED["vdb db unpack daily.cud"]}
    printf '  %-4s vdb db unpack daily.cud faster than sigtool --unpack daily.cud (%s s vs %s s)\n' \
        "$(verdict lt "$UC" "$SIG")" "$UC" "$SIG"
    printf '  %-4s vdb db unpack daily.cvd faster than sigtool --unpack daily.cud (%s s vs %s s)\n' \
        "$(verdict lt "$U" "$SIG")" "$U" "$SIG"
    printf '  %-4s vdb db verify daily.cvd within 1.2x of the floor (%sx)\n' \
        "$(verdict le "$(ratio "$V" "$FLOOR")" 1.2)" "$(ratio "$V" "$FLOOR")"
    for l in "vdb db verify daily.cvd" "vdb db unpack daily.cvd" "vdb db unpack daily.cud"; do
        printf '  %-4s %s under 64 MB peak RSS (%s MB)\n' \
            "$(verdict lt "${RSS[$l]}" $((64 * 1024)))" "$l" "$(mb "${RSS[$l]}")"
    done
} | tee "$OUT/results.txt"
echo "(raw timings: $OUT/raw-$NAME.tsv)" >&2
