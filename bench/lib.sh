# Shared helpers of the bench/ scripts (sourced, not run). The sourcing script sets ROOT (the
# repository), NAME (for messages) and RUNS; the array LABELS/MED/RSS are filled by measure.

# Settings every script shares: results directory, cargo's target directory, the vdb binary,
# and the synthetic database's size and seed.
OUT=${BENCH_OUT:-$ROOT/bench/out}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VDB=$TARGET_DIR/release/vdb
SIZE_MB=${SIZE_MB:-60}
SEED=${SEED:-1}

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

# synth_db DIR ARGS...: makes (or reuses, keyed by the arguments and by the sources that decide
# its bytes: the generator, the CLI and vdb-format's container builder) a synthetic database with
# `vdb db synth -o DIR ARGS...`; sets STAMP.
synth_db() {
    local dir=$1; shift
    local src
    src=$(cd "$ROOT/crates" && cat vdb-cli/src/synth.rs vdb-synth/src/*.rs vdb-format/src/build.rs \
        vdb-format/src/tar.rs $(ls vdb-format/src/segment.rs 2>/dev/null) | sha256sum | cut -c1-12)
    STAMP="synth $* (sources $src)"
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

# ---- Network benchmarks (serve.sh, dns.sh, propagation.sh) ----------------------------------
# Every background process a script starts goes into PIDS; `stop_all` (the scripts' EXIT trap)
# sends SIGTERM to each, waits up to 10 s, then SIGKILLs what is left.
PIDS=()
stop_all() {
    local p deadline=$((SECONDS + 10))
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}

# start_role LOGBASE ROLE CONFIG: starts `vdbd ROLE --config CONFIG` (stdout LOGBASE.out, stderr
# LOGBASE.err), waits at most 60 s for its one JSON ready line and leaves it in READY (the pid in
# LAST_PID and PIDS). Do not call it in $(...): PIDS would be lost.
start_role() {
    local base=$1 role=$2 config=$3 deadline=$((SECONDS + 60))
    "$VDBD" "$role" --config "$config" >"$base.out" 2>"$base.err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    READY=
    while [[ -z $READY ]]; do
        kill -0 "$LAST_PID" 2>/dev/null || { tail -n 20 "$base.err" >&2; die "vdbd $role exited; log in $base.err"; }
        ((SECONDS < deadline)) || die "vdbd $role printed no ready line within 60 s; log in $base.err"
        READY=$(head -n 1 "$base.out" 2>/dev/null || true)
        [[ -n $READY ]] || sleep 0.02
    done
}

# json FIELD TEXT: prints one top-level field of a JSON document (jq -r).
json() { jq -r ".$1 // empty" <<<"$2"; }

# free_port: prints a TCP port that was free on 127.0.0.1 a moment ago (for tools that cannot
# bind port 0, e.g. nginx and knotd).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until SECS COMMAND...: runs COMMAND every 20 ms until it succeeds; dies after SECS.
wait_until() {
    local secs=$1 deadline; shift
    deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after $secs s waiting for: $*"
        sleep 0.02
    done
}

# The constant-rate HTTP load generator of the fixed-rate runs (bench/README.md says why this
# one): oha from crates.io, pinned.
OHA_VERSION=1.16.0
# need_oha: sets OHA to an oha $OHA_VERSION: $OHA if set, else $OUT/tools/bin/oha, installed
# there with `cargo install --locked` when missing (plain HTTP only: no TLS, so no C toolchain
# for a crypto library; the benchmarks talk to 127.0.0.1 over HTTP).
need_oha() {
    if [[ -n ${OHA:-} ]]; then
        [[ -x $OHA ]] || die "OHA=$OHA is not an executable"
        return
    fi
    OHA=$OUT/tools/bin/oha
    if [[ ! -x $OHA ]] || ! "$OHA" --version 2>/dev/null | grep -qxF "oha $OHA_VERSION"; then
        echo "== cargo install --locked --no-default-features --features native-tls oha --version $OHA_VERSION --root $OUT/tools" >&2
        cargo install --locked --no-default-features --features native-tls oha --version "$OHA_VERSION" \
            --root "$OUT/tools" >&2 || die "cannot install oha $OHA_VERSION (or set OHA=)"
    fi
}

# loadavg: the 1-minute load average now.
loadavg() { cut -d' ' -f1 /proc/loadavg; }

# build_net: builds vdbd and vdb (release) unless NO_BUILD=1; sets VDBD and VDB.
build_net() {
    VDBD=$TARGET_DIR/release/vdbd
    VDB=$TARGET_DIR/release/vdb
    if [[ -z ${NO_BUILD:-} ]]; then
        echo "== cargo build --release --locked -p vdbd -p vdb-cli" >&2
        (cd "$ROOT" && cargo build --release --locked -p vdbd -p vdb-cli) >&2 ||
            die "the release build failed (NO_BUILD=1 reuses the binaries in $TARGET_DIR/release)"
    fi
    [[ -x $VDBD && -x $VDB ]] || die "missing $VDBD or $VDB (build them, or unset NO_BUILD)"
}

ADMIN_TOKEN=bench-admin-token-0123456789

# master_toml NAME LISTEN DATA KEY PUBLISHER_PUB DATABASES: a master config on the bench network
# that accepts DATABASES (a TOML list) from the publisher key; append sections after it.
master_toml() {
    cat <<TOML
name = "$1"
network = "bench"
listen = "$2"
data_dir = "$3"
key_file = "$4"
admin_token = "$ADMIN_TOKEN"

[[publishers]]
key = "$5"
databases = $6
TOML
}

# master_config FILE DATA KEY PUBLISHER_PUB KEYSET [EXTRA]: writes a master config listening on
# 127.0.0.1:0 that accepts `daily` from the publisher key, signed with the KEYSET ClamAV key set
# (empty KEYSET: ClamAV's official keys). EXTRA: top-level settings.
master_config() {
    {
        printf 'tick_ms = 50\npush_backoff_ms = 100\n%s\n' "${6:-}"
        master_toml bench 127.0.0.1:0 "$2" "$3" "$4" '["daily"]'
        [[ -z $5 ]] || printf '\n[databases.daily]\nkeyset_file = "%s"\n' "$5"
        # Every bench mirror reaches the master from 127.0.0.1: the per-address cap (128 by
        # default, one client's worth on a real network) would refuse the 100-mirror network.
        printf '\n[limits]\nmax_connections_per_ip = 4096\n'
    } >"$1"
}

# follower_toml NAME MASTER_URL MASTER_PUB: the first lines of the config of a role that follows
# one master (a mirror, a monitor) on the bench network.
follower_toml() {
    printf 'name = "%s"\nnetwork = "bench"\nmasters = ["%s"]\nmaster_keys = ["%s"]\n' "$1" "$2" "$3"
}

# mirror_config FILE NAME MASTER_URL MASTER_PUB DATA LOCAL [EXTRA]: a mirror on 127.0.0.1:0
# that polls only every hour (pushes make it sync).
mirror_config() {
    {
        follower_toml "$2" "$3" "$4"
        cat <<TOML
data_dir = "$5"
local_dir = "$6"
listen = "127.0.0.1:0"
poll_secs = 3600
${7:-}
TOML
    } >"$1"
}

# start_pushed_mirror LOGBASE CONFIG NAME [ARGS...]: starts `vdbd mirror` from CONFIG and
# registers it on $MASTER as NAME with its push URL (so that it syncs on every release) and ARGS
# (e.g. `--hub m1` for a leaf); appends its URL to URLS.
start_pushed_mirror() {
    start_role "$1" mirror "$2"
    URLS+=("$(json http "$READY")")
    "$VDB" mirror add --master "$MASTER" --token "$ADMIN_TOKEN" "$3" --base-url "${URLS[-1]}" \
        --push-url "${URLS[-1]}/.well-known/vdbnet/push" --address 127.0.0.1 "${@:4}" >/dev/null
}

# mirror_serial URL: the serial a mirror serves now (empty before its first sync).
mirror_serial() { curl -sf --max-time 5 "$1/.well-known/vdbnet/mirror-status" | jq -r '.serial // empty'; }
# serial_at_least URL N: true when the mirror at URL serves serial N or newer.
serial_at_least() { local s; s=$(mirror_serial "$1"); [[ -n $s ]] && ((s >= $2)); }
# mirror_serial_py DIR: writes DIR/mirror_serial.py for the Python pollers next to it (they
# `from mirror_serial import serial`): serial(url), the serial the mirror at url serves now (0
# if none or unreachable), over one keep-alive connection per mirror, a broken one replaced once.
mirror_serial_py() {
    cat >"$1/mirror_serial.py" <<'PY'
import http.client, json, urllib.parse
conns = {}
def serial(u):
    for attempt in (0, 1):
        try:
            c = conns.get(u)
            if c is None:
                p = urllib.parse.urlsplit(u)
                c = conns[u] = http.client.HTTPConnection(p.hostname, p.port, timeout=5)
            c.request("GET", "/.well-known/vdbnet/mirror-status")
            r = c.getresponse()
            body = r.read()
            return (json.loads(body).get("serial") or 0) if r.status == 200 else 0
        except (OSError, http.client.HTTPException, ValueError):
            conns.pop(u, None)
    return 0
PY
}
# master_serial URL: the serial of the master's current manifest.
master_serial() { curl -sf --max-time 5 "$1/metrics" | awk '/^vdb_master_manifest_serial /{print $2}'; }
# metric URL NAME: one unlabelled Prometheus value from URL/metrics.
metric() { curl -sf --max-time 5 "$1/metrics" | awk -v n="$2" '$1 == n {print $2}'; }

# start_master_with_old_release W LOG: Ed25519 keys for a master and a publisher in W, a master
# (its output under LOG) trusting $SYNTH's key set, the old and new releases staged as
# W/stage-old and W/stage-new (hard links into $SYNTH), and the old one published. Needs VDB,
# SYNTH, OLD_V, NEW_V; sets MASTER and MASTER_PUB.
start_master_with_old_release() {
    local w=$1 log=$2
    "$VDB" key gen -o "$w/master.key" >/dev/null
    "$VDB" key gen -o "$w/publisher.key" >/dev/null
    MASTER_PUB=$("$VDB" key pub "$w/master.key")
    master_config "$w/master.toml" "$w/master-data" "$w/master.key" \
        "$("$VDB" key pub "$w/publisher.key")" "$SYNTH/synth.key.pub"
    start_role "$log" master "$w/master.toml"
    MASTER=$(json http "$READY")
    echo "== master at $MASTER" >&2
    ln "$SYNTH/daily-$OLD_V.cvd" "$w/stage-old/daily.cvd"
    ln "$SYNTH/daily-$NEW_V.cvd" "$w/stage-new/daily.cvd"
    ln "$SYNTH/daily-$NEW_V.cdiff" "$w/stage-new/daily-$NEW_V.cdiff"
    "$VDB" publish --master "$MASTER" --key "$w/publisher.key" "$w/stage-old/daily.cvd" >&2
}
