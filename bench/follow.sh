#!/usr/bin/env bash
# Following ClamAV's upstream (issue 13): what a vdbnet network costs the CDN, and how soon an
# upstream release reaches every mirror. The upstream is the test kit's CDN double as a process
# (crates/vdb-testkit/examples/cdn.rs: ClamAV's signed test database `test` served as
# database.clamav.net serves a database, with its version TXT record `test.cvd.clamav.net`, every
# request and DNS query counted).
#
# 1. Requests per check in steady state (nothing changes upstream), for CHECKS checks each:
#    - the baseline, the real freshclam 1.4.6 run as a cron job would (DNS mode: its resolver is the
#      CDN's DNS through `unshare -m` and a bind-mounted resolv.conf, so this part needs root; and
#      with `DNSDatabaseInfo no`);
#    - a real `vdbd master` following the CDN every INTERVAL seconds, with `dns_txt` and without.
#    Per day = per check x checks per day at the default interval (3600 s: 24 checks).
#    Goal: one TXT lookup per check and no HTTP request when nothing changed.
# 2. Release to every mirror: the master (DNS mode) and MIRRORS pushed `vdbd mirror` processes;
#    the CDN releases test 4, 5 and 6 (files and TXT record at once), and a poller notes when the
#    master's manifest moved and when every mirror served the new version. The time includes the
#    wait for the follower's next check (at most INTERVAL s). Goal: every mirror within
#    INTERVAL + 2 s of the release (the 2 s of issue 8 for a small database).
#
#   bench/follow.sh                       # results in bench/out/results-follow.txt
#   INTERVAL=5 CHECKS=20 MIRRORS=5 bench/follow.sh
#   NO_BUILD=1 bench/follow.sh            # reuse target/release/{vdbd,vdb,examples/cdn}
#
# Needs: cargo, curl, jq, python3, awk; freshclam 1.4.6, unshare and root for the baseline.
# Never exits non-zero because a goal is missed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=1
NAME=follow.sh
INTERVAL=${INTERVAL:-2}
CHECKS=${CHECKS:-20}
MIRRORS=${MIRRORS:-3}
FIXTURES=${FIXTURES:-$ROOT/../shared/fixtures/clamav}
DNS_IP=${DNS_IP:-127.53.0.2}
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need_tools cargo curl jq python3 awk
((INTERVAL >= 1 && INTERVAL <= 60)) || die "INTERVAL must be 1..60 seconds"
((CHECKS >= 3 && CHECKS <= 500)) || die "CHECKS must be 3..500"
((MIRRORS >= 1 && MIRRORS <= 50)) || die "MIRRORS must be 1..50"
[[ -f $FIXTURES/test-6.cvd && -d $FIXTURES/certs ]] ||
    die "ClamAV's test databases and certs are not in $FIXTURES (set FIXTURES)"
root=yes
[[ $(id -u) == 0 ]] && command -v freshclam >/dev/null && command -v unshare >/dev/null || root=

build_net
CDN_BIN=$TARGET_DIR/release/examples/cdn
if [[ -z ${NO_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release --locked -p vdb-testkit --features net --example cdn) >&2 ||
        die "building the CDN double failed"
fi
[[ -x $CDN_BIN ]] || die "missing $CDN_BIN (build it, or unset NO_BUILD)"

F=$OUT/follow
rm -rf "$F"
mkdir -p "$F"/{logs,freshclam/db}
trap 'stop_all; rm -rf "$F/master-data" "$F"/m[0-9]*' EXIT

# ---- the CDN double, driven through a coprocess -------------------------------------------
dns_bind=127.0.0.1:0
[[ -n $root ]] && dns_bind=$DNS_IP:53
coproc CDN { "$CDN_BIN" 127.0.0.1:0 "$dns_bind" 2>"$F/logs/cdn.err"; }
PIDS+=("$CDN_PID")
read -r -t 30 cdn_ready <&"${CDN[0]}" || die "the CDN double did not start: $(cat "$F/logs/cdn.err")"
CDN_URL=$(json http "$cdn_ready") CDN_DNS=$(json dns "$cdn_ready")
# cdn COMMAND...: one command to the CDN double; its JSON answer on stdout.
cdn() {
    local reply
    echo "$*" >&"${CDN[1]}"
    read -r -t 10 reply <&"${CDN[0]}" || die "the CDN double did not answer '$*'"
    echo "$reply"
}
# release V: the CDN serves test V (cdiffs 2..V) and its TXT record says V, now.
release() {
    cdn serve test "$1" 2 >/dev/null
    cdn txt test.cvd.clamav.net "$1:$(date +%s)" >/dev/null
    # freshclam reads current.cvd.clamav.net first (the ClamAV version check), as it does.
    cdn txt current.cvd.clamav.net "1.4.6:62:27000:$(date +%s):0:90:0:335" >/dev/null
}
release 3
echo "== CDN double at $CDN_URL, DNS $CDN_DNS; serving test 3 (load average $(loadavg))" >&2

# ---- 1a. the baseline: freshclam 1.4.6 at test 3, run CHECKS times each way ----------------
fc_line=("  freshclam 1.4.6: skipped (needs root, freshclam and unshare)")
if [[ -n $root ]]; then
    printf 'nameserver %s\noptions timeout:2 attempts:1\n' "$DNS_IP" >"$F/resolv.conf"
    cp "$FIXTURES/test-3.cvd" "$F/freshclam/db/test.cvd"
    fc_conf() {
        cat <<CONF
DatabaseMirror $CDN_URL
DNSDatabaseInfo $1
DatabaseDirectory $F/freshclam/db
DatabaseOwner root
PidFile $F/freshclam/freshclam.pid
LogFileMaxSize 0
UpdateLogFile $F/freshclam/freshclam.log
MaxAttempts 1
TestDatabases no
Bytecode no
CONF
    }
    fc_line=()
    for mode in dns http; do
        if [[ $mode == dns ]]; then fc_conf current.cvd.clamav.net; else fc_conf no; fi >"$F/freshclam.conf"
        cdn clear >/dev/null
        for ((i = 1; i <= CHECKS; i++)); do
            unshare -m sh -c "mount --bind $F/resolv.conf /etc/resolv.conf && exec freshclam --config-file=$F/freshclam.conf --update-db=test --stdout" \
                >>"$F/logs/freshclam-$mode.log" 2>&1 || die "freshclam failed (log: $F/logs/freshclam-$mode.log)"
        done
        c=$(cdn count)
        grep -q "test.cvd database is up-to-date (version: 3" "$F/logs/freshclam-$mode.log" ||
            die "freshclam did not find test 3 up to date (log: $F/logs/freshclam-$mode.log)"
        fc_line+=("  freshclam 1.4.6, $mode mode, $CHECKS runs: $(jq -r .dns <<<"$c") TXT lookups ($(jq -r '.names | unique | join(", ")' <<<"$c")), $(jq -r .http <<<"$c") HTTP requests ($(jq -r '[.paths, .statuses] | transpose | map("\(.[0]) \(.[1])") | unique | join(", ")' <<<"$c"))")
        declare "FC_${mode}_dns=$(jq -r .dns <<<"$c")" "FC_${mode}_http=$(jq -r .http <<<"$c")"
    done
fi

# ---- 1b. a real vdbd master following the CDN --------------------------------------------
"$VDB" key gen -o "$F/master.key" >/dev/null
"$VDB" key gen -o "$F/upstream.key" >/dev/null
MPUB=$("$VDB" key pub "$F/master.key")
# follow_toml DNS(yes|no): the master's config; it listens where it listened before.
LISTEN=127.0.0.1:0
follow_toml() {
    printf 'cvd_certs_dir = "%s"\n' "$FIXTURES/certs"
    master_toml a "$LISTEN" "$F/master-data" "$F/master.key" "$("$VDB" key pub "$F/upstream.key")" '["test"]'
    cat <<TOML

[upstream]
url = "$CDN_URL"
databases = ["test"]
interval_secs = $INTERVAL
key_file = "$F/upstream.key"
TOML
    if [[ $1 == yes ]]; then
        printf 'dns_txt = "current.cvd.clamav.net"\ndns_server = "%s"\n' "$CDN_DNS"
    fi
}
# checks URL: upstream checks the master has made (every result).
checks() {
    curl -sf --max-time 5 "$1/metrics" |
        awk '/^vdb_master_upstream_checks_total/ {s += $2} END {print s + 0}'
}
checks_at_least() { (($(checks "$1") >= $2)); }
MASTER=
declare -A PER_DNS PER_HTTP
for mode in no yes; do
    [[ -n $MASTER ]] && { kill "$LAST_PID"; wait "$LAST_PID" 2>/dev/null || true; }
    follow_toml $mode >"$F/master.toml"
    start_role "$F/logs/master-dns-$mode" master "$F/master.toml"
    MASTER=$(json http "$READY")
    LISTEN=${MASTER#http://}
    # Past its first checks (a start looks at the files whatever the record says).
    wait_until $((10 * INTERVAL + 30)) checks_at_least "$MASTER" 2
    cdn clear >/dev/null
    c0=$(checks "$MASTER")
    wait_until $((3 * CHECKS * INTERVAL + 30)) checks_at_least "$MASTER" $((c0 + CHECKS))
    c=$(cdn count)
    n=$(($(checks "$MASTER") - c0))
    PER_DNS[$mode]=$(awk -v a="$(jq -r .dns <<<"$c")" -v n="$n" 'BEGIN {printf "%.2f", a / n}')
    PER_HTTP[$mode]=$(awk -v a="$(jq -r .http <<<"$c")" -v n="$n" 'BEGIN {printf "%.2f", a / n}')
    echo "== master, dns_txt $mode: $n checks, $(jq -c '{dns, http}' <<<"$c")" >&2
done
day() { awk -v p="$1" 'BEGIN {printf "%.0f", p * 24}'; }

# ---- 2. upstream releases to every mirror ----------------------------------------------------
URLS=()
for ((i = 1; i <= MIRRORS; i++)); do
    {
        follower_toml "m$i" "$MASTER" "$MPUB"
        printf 'data_dir = "%s"\nlisten = "127.0.0.1:0"\npoll_secs = 3600\n' "$F/m$i"
    } >"$F/m$i.toml"
    start_pushed_mirror "$F/logs/m$i" "$F/m$i.toml" "m$i"
done
printf '%s\n' "${URLS[@]}" >"$F/mirrors.txt"
serves() { [[ $(curl -sf --max-time 5 "$1/.well-known/vdbnet/mirror-status" | jq -r '.databases.test // 0') -ge $2 ]]; }
for u in "${URLS[@]}"; do wait_until 120 serves "$u" 3; done
cat >"$F/poll.py" <<'PY'
"""After an upstream release of version V at time T0: prints when the master's manifest moved
(its serial metric) and when every mirror first served test V (seconds after T0, `-` if never)."""
import http.client, json, sys, time, urllib.parse
urls, master, serial0, version, t0, max_wait = (open(sys.argv[1]).read().split(), sys.argv[2],
    int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
def get(u, path):
    p = urllib.parse.urlsplit(u)
    try:
        c = http.client.HTTPConnection(p.hostname, p.port, timeout=5)
        c.request("GET", path)
        r = c.getresponse()
        return r.read().decode() if r.status == 200 else ""
    except OSError:
        return ""
left, t_master, t_all = set(urls), None, None
while t_all is None and time.time() < t0 + max_wait:
    if t_master is None:
        for line in get(master, "/metrics").splitlines():
            if line.startswith("vdb_master_manifest_serial ") and int(float(line.split()[1])) > serial0:
                t_master = time.time()
    for u in list(left):
        try:
            if json.loads(get(u, "/.well-known/vdbnet/mirror-status") or "{}").get("databases", {}).get("test", 0) >= version:
                left.discard(u)
        except ValueError:
            pass
    if not left:
        t_all = time.time()
    time.sleep(0.005)
f = lambda t: f"{t - t0:.3f}" if t else "-"
print(f(t_master), f(t_all))
PY
lines=() ok=true load_before=$(loadavg)
for v in 4 5 6; do
    cdn clear >/dev/null
    serial0=$(master_serial "$MASTER")
    t0=$(date +%s.%N)
    release "$v"
    read -r d_master d_all < <(python3 "$F/poll.py" "$F/mirrors.txt" "$MASTER" "$serial0" "$v" "$t0" $((INTERVAL + 60)))
    c=$(cdn count)
    [[ $d_all != - ]] && le "$d_all" $((INTERVAL + 2)) || ok=false
    lines+=("  test $v: master's manifest moved $d_master s, every mirror served it $d_all s after the release; upstream requests: $(jq -r .dns <<<"$c") TXT, $(jq -r '.paths | join(" ")' <<<"$c")")
done
load_after=$(loadavg)

{
    echo "follow.sh: following an upstream (issue 13); date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    machine_line
    echo "upstream: the CDN double (ClamAV's test database, TXT test.cvd.clamav.net); the master's interval_secs $INTERVAL"
    echo "load average: $load_before before the first release, $load_after after the last"
    echo "1. requests to the upstream per check in steady state (nothing changed upstream):"
    printf '%s\n' "${fc_line[@]}"
    for mode in yes no; do
        echo "  vdbd master, dns_txt $([[ $mode == yes ]] && echo set || echo unset): ${PER_DNS[$mode]} TXT lookups and ${PER_HTTP[$mode]} HTTP requests per check; at the default interval (3600 s): $(day "${PER_DNS[$mode]}") TXT lookups and $(day "${PER_HTTP[$mode]}") HTTP requests per day"
    done
    goal=false
    le "${PER_DNS[yes]}" 1 && le "${PER_HTTP[yes]}" 0 && lt 0.9 "${PER_DNS[yes]}" && goal=true
    echo "  $(verdict $goal) with DNS: one TXT lookup per check and no HTTP request"
    if [[ -n $root ]]; then
        base=false
        awk -v a="${PER_DNS[yes]}" -v b="$FC_dns_dns" -v c="${PER_HTTP[yes]}" -v d="$FC_dns_http" \
            -v e="${PER_HTTP[no]}" -v g="$FC_http_http" -v n="$CHECKS" \
            'BEGIN {exit !(a <= b / n && c <= d / n && e <= g / n)}' && base=true
        echo "  $(verdict $base) no more requests per check than freshclam 1.4.6, in each mode"
    fi
    echo "2. an upstream release to every mirror ($MIRRORS pushed mirrors; includes the wait for the next check, at most $INTERVAL s):"
    printf '%s\n' "${lines[@]}"
    echo "  $(verdict $ok) every mirror serves each release within interval + 2 s ($((INTERVAL + 2)) s)"
} | tee "$OUT/results-follow.txt"
