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
OUT=${BENCH_OUT:-$ROOT/bench/out}
RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-60}
SEED=${SEED:-1}
CDIFFS=${CDIFFS:-3}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VDB=$TARGET_DIR/release/vdb

die() { echo "bench/verify.sh: $*" >&2; exit 1; }

# --- prerequisites ---------------------------------------------------------------------------
[[ -x /usr/bin/time ]] && /usr/bin/time --version 2>&1 | grep -q GNU ||
    die "GNU time is required at /usr/bin/time (install it: apt-get install time)"
for tool in cargo sigtool gzip tar md5sum tail awk sort; do
    command -v "$tool" >/dev/null || die "$tool is required but not installed"
done
(( RUNS >= 1 )) || die "RUNS must be at least 1"

mkdir -p "$OUT"
echo "== building vdb (release)" >&2
(cd "$ROOT" && cargo build --release --locked -p vdb-cli) >&2

# --- the database (cached by its arguments) --------------------------------------------------
SYNTH=$OUT/synth
SYNTH_ARGS=(--size-mb "$SIZE_MB" --cdiffs "$CDIFFS" --seed "$SEED" --cud)
# The cache is keyed by the arguments and by the generator's source (FRESH=1 forces a rebuild,
# e.g. after a change in vdb-format's builder).
STAMP="synth ${SYNTH_ARGS[*]} (synth.rs $(sha256sum "$ROOT/crates/vdb-cli/src/synth.rs" | cut -c1-12))"
if [[ -z ${FRESH:-} && -f $SYNTH/.args && "$(cat "$SYNTH/.args")" == "$STAMP" &&
      -f $SYNTH/daily.cvd && -f $SYNTH/daily.cud && -f $SYNTH/synth.key.pub ]]; then
    echo "== reusing $SYNTH ($STAMP)" >&2
else
    echo "== vdb db synth -o $SYNTH ${SYNTH_ARGS[*]}" >&2
    rm -rf "$SYNTH"
    "$VDB" db synth -o "$SYNTH" "${SYNTH_ARGS[@]}" >&2
    echo "$STAMP" >"$SYNTH/.args"
fi
CVD=$SYNTH/daily.cvd
CUD=$SYNTH/daily.cud
KEYS=$SYNTH/synth.key.pub
"$VDB" db verify --keys "$KEYS" "$CVD" >/dev/null || die "$CVD does not verify"

# Warm the page cache so that every command reads from memory.
cat "$CVD" "$CUD" >/dev/null

# --- measuring -------------------------------------------------------------------------------
SCRATCH=$OUT/scratch
TIMES=$OUT/time.txt
RAW=$OUT/raw.tsv
: >"$RAW"

# measure LABEL CWD-MODE COMMAND...: runs COMMAND $RUNS times under GNU time and records the
# median wall time and the largest peak RSS. CWD-MODE "fresh" runs it inside an empty
# $SCRATCH/run (made anew each time); "here" runs it in $SYNTH. The literal word @DIR@ in the
# command is replaced by a fresh, not yet existing $SCRATCH/dir.
declare -A MED RSS
LABELS=()
measure() {
    local label=$1 mode=$2; shift 2
    local secs=() peak=0 i
    for ((i = 1; i <= RUNS; i++)); do
        rm -rf "$SCRATCH"
        mkdir -p "$SCRATCH/run"
        local cmd=("${@//@DIR@/$SCRATCH/dir}") cwd=$SYNTH
        [[ $mode == fresh ]] && cwd=$SCRATCH/run
        if ! (cd "$cwd" && /usr/bin/time -f '%e %M' -o "$TIMES" "${cmd[@]}" \
                >"$OUT/last.out" 2>"$OUT/last.err"); then
            cat "$OUT/last.err" >&2
            die "failed: ${cmd[*]}"
        fi
        local e m
        read -r e m < <(tail -n 1 "$TIMES")
        secs+=("$e")
        if (( m > peak )); then peak=$m; fi
        printf '%s\t%s\t%s\t%s\n' "$label" "$i" "$e" "$m" >>"$RAW"
    done
    MED[$label]=$(printf '%s\n' "${secs[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    RSS[$label]=$peak
    LABELS+=("$label")
    printf '   %-34s runs: %s  -> median %s s, peak %s KiB\n' \
        "$label" "${secs[*]}" "${MED[$label]}" "$peak" >&2
}

echo "== measuring ($RUNS runs each, median wall time)" >&2
measure "vdb db verify daily.cvd" here \
    "$VDB" db verify --keys "$KEYS" "$CVD"
measure "vdb db unpack daily.cvd" here \
    "$VDB" db unpack --keys "$KEYS" "$CVD" @DIR@
measure "vdb db unpack daily.cud" here \
    "$VDB" db unpack "$CUD" @DIR@
measure "sigtool --unpack daily.cud" fresh \
    sigtool --unpack "$CUD"
measure "floor: md5sum + gunzip | tar -t" here \
    sh -c 'md5sum "$1" >/dev/null && tail -c +513 "$1" | gzip -dc | tar -t >/dev/null' sh "$CVD"
# Not goals: the two halves of the floor, to show where its time goes.
measure "  (floor part: md5sum)" here \
    md5sum "$CVD"
measure "  (floor part: gunzip | tar -t)" here \
    sh -c 'tail -c +513 "$1" | gzip -dc | tar -t >/dev/null' sh "$CVD"
rm -rf "$SCRATCH"

# --- report ----------------------------------------------------------------------------------
SIG=${MED["sigtool --unpack daily.cud"]}
FLOOR=${MED["floor: md5sum + gunzip | tar -t"]}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
verdict() { if "$@"; then echo PASS; else echo MISS; fi; }

{
    echo "vdb verify/unpack benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, load average $(cut -d' ' -f1-3 /proc/loadavg)"
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
echo "(raw timings: $RAW)" >&2
