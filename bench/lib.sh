# Shared helpers of the bench/ scripts (sourced, not run). The sourcing script sets NAME (for
# messages), OUT (results directory), RUNS, and the array LABELS/MED/RSS are filled by measure.

die() { echo "bench/$NAME: $*" >&2; exit 1; }

# need_tools TOOL...: stops with a clear message when a tool is missing; GNU time is always needed.
need_tools() {
    [[ -x /usr/bin/time ]] && /usr/bin/time --version 2>&1 | grep -q GNU ||
        die "GNU time is required at /usr/bin/time (install it: apt-get install time)"
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is required but not installed"
    done
    (( RUNS >= 1 )) || die "RUNS must be at least 1"
}

# measure LABEL CWD COMMAND...: runs COMMAND $RUNS times in directory CWD under GNU time and
# records the median wall time (MED[LABEL]) and the largest peak RSS in KiB (RSS[LABEL]). Before
# each run, $SCRATCH is emptied and $SCRATCH/run created; the literal word @DIR@ in the command is
# replaced by a fresh, not yet existing $SCRATCH/dir; the word @RUN@ in CWD by $SCRATCH/run. If the
# function `prepare` is defined, it runs before each run (untimed), in CWD.
declare -A MED RSS
LABELS=()
measure() {
    local label=$1 cwd_spec=$2; shift 2
    local secs=() peak=0 i
    for ((i = 1; i <= RUNS; i++)); do
        rm -rf "$SCRATCH"
        mkdir -p "$SCRATCH/run"
        local cmd=("${@//@DIR@/$SCRATCH/dir}") cwd=${cwd_spec//@RUN@/$SCRATCH/run}
        if declare -F prepare >/dev/null; then (cd "$cwd" && prepare "$label"); fi
        if ! (cd "$cwd" && /usr/bin/time -f '%e %M' -o "$OUT/time.txt" "${cmd[@]}" \
                >"$OUT/last.out" 2>"$OUT/last.err"); then
            cat "$OUT/last.err" >&2
            die "failed: ${cmd[*]}"
        fi
        local e m
        read -r e m < <(tail -n 1 "$OUT/time.txt")
        secs+=("$e")
        if (( m > peak )); then peak=$m; fi
        printf '%s\t%s\t%s\t%s\n' "$label" "$i" "$e" "$m" >>"$OUT/raw-$NAME.tsv"
    done
    MED[$label]=$(printf '%s\n' "${secs[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    RSS[$label]=$peak
    LABELS+=("$label")
    printf '   %-40s runs: %s  -> median %s s, peak %s KiB\n' \
        "$label" "${secs[*]}" "${MED[$label]}" "$peak" >&2
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
verdict() { if "$@"; then echo PASS; else echo MISS; fi; }

machine_line() {
    echo "machine: $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# synth_db DIR ARGS...: makes (or reuses, keyed by the arguments and synth.rs) a synthetic
# database with `vdb db synth -o DIR ARGS...`; sets STAMP.
synth_db() {
    local dir=$1; shift
    STAMP="synth $* (synth.rs $(sha256sum "$ROOT/crates/vdb-cli/src/synth.rs" | cut -c1-12))"
    if [[ -z ${FRESH:-} && -f $dir/.args && "$(cat "$dir/.args")" == "$STAMP" &&
          -f $dir/daily.cvd && -f $dir/synth.key.pub ]]; then
        echo "== reusing $dir ($STAMP)" >&2
    else
        echo "== vdb db synth -o $dir $*" >&2
        rm -rf "$dir"
        "$VDB" db synth -o "$dir" "$@" >&2
        echo "$STAMP" >"$dir/.args"
    fi
}
