#!/usr/bin/env bash
# DNS benchmark (issues 6 and 16): the real `vdbd directory` answering a zone built from N
# mirrors registered on a real `vdbd master`, against Knot (knotd) serving the same zone as a
# secondary that transferred it from the directory (AXFR). Both driven by dnsperf with the same
# queries (database A, current.cvd TXT, SOA), at maximum rate and at fixed rates (a share of
# Knot's maximum); then the directory's HTTP redirector under wrk.
#
#   bench/dns.sh                          # everything; results in bench/out/results-dns.txt
#   ROUNDS=5 SECS=10 RATES="25 50 90" bench/dns.sh
#   NO_BUILD=1 bench/dns.sh               # reuse target/release/{vdbd,vdb} as they are
#
# Maximum rate: dnsperf with CLIENTS sockets, THREADS send/receive thread pairs and OUTSTANDING
# queries in flight, for SECS seconds or QUERIES queries, whichever ends first; ROUNDS rounds,
# directory and Knot alternating (medians reported). Fixed rates: dnsperf -Q at RATES percent of
# Knot's median maximum for that query, FIXED_SECS seconds each, with -v (one line per answer,
# its latency): p50/p99/p99.9 are computed from every answer's latency (dnsperf 2.10 has no
# histogram of its own). Redirector: wrk -t2 -c32 for WRK_SECS seconds with --latency.
# Needs: cargo, GNU time, knotd, kdig, dig, curl, jq, python3, dnsperf, wrk. Never exits
# non-zero because a goal is missed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=1
MIRRORS=${MIRRORS:-20}
SECS=${SECS:-8}
QUERIES=${QUERIES:-5000000}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-1}
OUTSTANDING=${OUTSTANDING:-200}
RATES=${RATES:-25 50 90}
FIXED_SECS=${FIXED_SECS:-5}
# Fixed rates with the servers on CPU 1 and dnsperf alone on CPU 0 (taskset), so that the client
# keeps the offered rate; PIN=0 lets all share every CPU, as the maximum-rate runs do.
PIN=${PIN:-1}
# SPLIT=1: one core each for every phase. Both servers start on CPU 1 with one serving thread
# (the directory sees one CPU; Knot gets udp-workers 1), dnsperf runs on CPU 0. The redirector
# then also has one CPU (its figure is not comparable with the shared runs').
SPLIT=${SPLIT:-0}
((SPLIT)) && PIN=1
WRK_SECS=${WRK_SECS:-10}
ZONE=${ZONE:-db.bench.test}
NAME=dns.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need_tools cargo knotd kdig dig curl jq python3 awk dnsperf wrk
if ((PIN)); then
    need_tools taskset
    (($(nproc) >= 2)) || die "PIN=1 needs 2 CPUs (one for dnsperf, one for the server); set PIN=0"
fi
((MIRRORS >= 1 && MIRRORS <= 250)) || die "MIRRORS must be 1..250 (addresses 192.0.2.1..250)"
((QUERIES >= 1000 && QUERIES <= 100000000)) || die "QUERIES must be 1000..100000000"
((SECS >= 1 && SECS <= 120)) || die "SECS must be 1..120"
((FIXED_SECS >= 1 && FIXED_SECS <= 120)) || die "FIXED_SECS must be 1..120"
((WRK_SECS >= 1 && WRK_SECS <= 120)) || die "WRK_SECS must be 1..120"
((ROUNDS >= 1 && ROUNDS <= 10)) || die "ROUNDS must be 1..10"
((CLIENTS >= 1 && CLIENTS <= 256 && THREADS >= 1 && THREADS <= 8)) || die "CLIENTS 1..256, THREADS 1..8"
((OUTSTANDING >= 1 && OUTSTANDING <= 65535)) || die "OUTSTANDING must be 1..65535"
for r in $RATES; do ((r >= 1 && r <= 100)) || die "RATES are percentages 1..100"; done

mkdir -p "$OUT"
build_net
W=$OUT/dns
rm -rf "$W"
mkdir -p "$W/knot"
trap stop_all EXIT

# --- master with N registered mirrors, the directory polling it -----------------------------
"$VDB" key gen -o "$W/master.key" >/dev/null
"$VDB" key gen -o "$W/publisher.key" >/dev/null
master_config "$W/master.toml" "$W/master-data" "$W/master.key" \
    "$("$VDB" key pub "$W/publisher.key")" ""
start_role "$W/master" master "$W/master.toml"
MASTER=$(json http "$READY")
echo "== master at $MASTER; registering $MIRRORS mirrors" >&2
for ((i = 1; i <= MIRRORS; i++)); do
    "$VDB" mirror add --master "$MASTER" --token "$ADMIN_TOKEN" "m$i" \
        --base-url "http://192.0.2.$i" --address "192.0.2.$i" --bandwidth 100 >/dev/null
done

# A stand-in for the monitor (so the TXT records have versions): a few lines of Python serving
# a VerdictReport in which every mirror is in service and serves daily 27001, main 62,
# bytecode 335.
MONITOR_PORT=$(free_port)
cat >"$W/monitor.py" <<'PY'
import http.server, json, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/api/v1/verdicts":
            self.send_error(404); return
        body = json.dumps({"monitor": "bench", "generated_at": int(time.time()),
            "newest": {"daily": 27001, "main": 62, "bytecode": 335},
            "mirrors": [{"name": f"m{i}", "state": "in_service",
                         "serving": {"daily": 27001, "main": 62, "bytecode": 335}}
                        for i in range(1, n + 1)]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
python3 "$W/monitor.py" "$MIRRORS" "$MONITOR_PORT" 2>"$W/monitor.log" &
PIDS+=("$!")
wait_until 20 curl -sf -o /dev/null "http://127.0.0.1:$MONITOR_PORT/api/v1/verdicts"

KNOT_PORT=$(free_port)
cat >"$W/directory.toml" <<TOML
zone = "$ZONE"
dns_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
masters = ["$MASTER"]
monitors = ["http://127.0.0.1:$MONITOR_PORT"]
poll_secs = 1
notify = ["127.0.0.1:$KNOT_PORT"]
axfr_allow = ["127.0.0.1"]

[[nameservers]]
name = "ns1.$ZONE"
addresses = ["127.0.0.1"]
TOML
if ((SPLIT)); then
    # start_role runs "$VDBD": a one-line wrapper starts the directory on CPU 1 (exec keeps
    # the PID, so the readiness wait and the clean-up still see the server itself).
    printf '#!/bin/sh\nexec taskset -c 1 "%s" "$@"\n' "$VDBD" >"$W/vdbd-cpu1"
    chmod +x "$W/vdbd-cpu1"
    VDBD_ALL=$VDBD VDBD=$W/vdbd-cpu1
fi
start_role "$W/directory" directory "$W/directory.toml"
((SPLIT)) && VDBD=$VDBD_ALL
DIR_PID=$LAST_PID
DIR_DNS=$(json dns "$READY")
DIR_IP=${DIR_DNS%:*} DIR_PORT=${DIR_DNS##*:}
echo "== directory DNS at $DIR_DNS" >&2
DIR_HTTP=$(json http "$READY")
# The registry is read once per poll: wait until the directory knows all N and answers.
knows_all() { (($(curl -sf "$DIR_HTTP/api/v1/mirrors" | jq '.mirrors | length') >= MIRRORS)); }
wait_until 30 knows_all
answers() { dig "@$DIR_IP" -p "$DIR_PORT" +short "database.$ZONE" A | grep -q '^192\.0\.2\.' &&
    dig "@$DIR_IP" -p "$DIR_PORT" +short "current.cvd.$ZONE" TXT | grep -q ':27001:'; }
wait_until 30 answers

# --- Knot as a secondary of the directory ----------------------------------------------------
cat >"$W/knot/knot.conf" <<CONF
server:
    rundir: "$W/knot"
    listen: 127.0.0.1@$KNOT_PORT
    pidfile: "$W/knot/knot.pid"
$( ((SPLIT)) && printf '    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n')
log:
  - target: stderr
    any: notice
database:
    storage: "$W/knot"
remote:
  - id: directory
    address: $DIR_IP@$DIR_PORT
acl:
  - id: from_directory
    address: $DIR_IP
    action: notify
template:
  - id: default
    storage: "$W/knot"
    zonefile-load: none
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: $ZONE
    master: directory
    acl: from_directory
CONF
KNOT_CPU=()
((SPLIT)) && KNOT_CPU=(taskset -c 1)
"${KNOT_CPU[@]}" knotd -c "$W/knot/knot.conf" 2>"$W/knot/knot.log" &
KNOT_PID=$!
PIDS+=("$KNOT_PID")
soa() { dig "@$1" -p "$2" +short "$ZONE" SOA | awk '{print $3}'; }
same_serial() { local a b; a=$(soa "$DIR_IP" "$DIR_PORT"); b=$(soa 127.0.0.1 "$KNOT_PORT"); [[ -n $a && $a == "$b" ]]; }
wait_until 30 same_serial
echo "== knot at 127.0.0.1:$KNOT_PORT holds serial $(soa 127.0.0.1 "$KNOT_PORT")" >&2
dig "@$DIR_IP" -p "$DIR_PORT" +nocmd +nostats "$ZONE" AXFR >"$W/zone-directory.txt"
dig @127.0.0.1 -p "$KNOT_PORT" +nocmd +nostats "$ZONE" AXFR >"$W/zone-knot.txt"
ZONE_RRS=$(grep -vc '^;\|^$' "$W/zone-directory.txt" || true)

# --- dnsperf ------------------------------------------------------------------------------------
# Query types as dnsperf reads them; directory and Knot alternate per case.
CASES=("database A|database.$ZONE A" "current.cvd TXT|current.cvd.$ZONE TXT" "SOA|$ZONE SOA")
for c in "${CASES[@]}"; do
    IFS='|' read -r label line <<<"$c"
    echo "$line" >"$W/q-${label// /_}.txt"
done
declare -A ADDR=([directory]="$DIR_IP $DIR_PORT" [knot]="127.0.0.1 $KNOT_PORT")
declare -A QPS AVG LOST LOAD ROUND_QPS FX_P50 FX_P99 FX_P999 FX_QPS FX_LOST FX_LOAD FX_SENT
BEHIND=
CLIENT_CPU=()
((SPLIT)) && CLIENT_CPU=(taskset -c 0)
field() { awk -v k="$1" '{ s = $0; sub(/^ +/, "", s); if (substr(s, 1, length(k)) == k) { split(substr(s, length(k) + 1), a, " "); print a[1]; exit } }' <<<"$2"; }
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# max_rate LABEL SERVER: one maximum-rate run; appends to QPS etc.
max_rate() {
    local label=$1 server=$2 key="$1/$2" out l ip port
    read -r ip port <<<"${ADDR[$server]}"
    l=$(loadavg)
    out=$(timeout $((SECS + 30)) "${CLIENT_CPU[@]}" dnsperf -s "$ip" -p "$port" -d "$W/q-${label// /_}.txt" \
        -c "$CLIENTS" -T "$THREADS" -q "$OUTSTANDING" -l "$SECS" -n "$QUERIES" -t 2 2>&1) ||
        die "dnsperf failed against $server: $out"
    echo "$out" >"$W/max-${label// /_}-$server-$round.txt"
    local qps avg lost
    qps=$(printf '%.0f' "$(field "Queries per second:" "$out")") avg=$(field "Average Latency (s):" "$out")
    lost=$(field "Queries lost:" "$out")
    QPS[$key]+="$qps " AVG[$key]+="$avg " LOST[$key]+="$lost " LOAD[$key]+="$l "
    printf '   round %s %-16s %-9s %9s q/s  avg %s s  lost %s  load %s\n' "$round" "$label" \
        "$server" "$qps" "$avg" "$lost" "$l" >&2
}

# fixed_rate LABEL SERVER PCT RATE: one run at RATE queries/s with every answer's latency.
fixed_rate() {
    local label=$1 server=$2 pct=$3 rate=$4 key="$1/$2/$3" l ip port lat out
    read -r ip port <<<"${ADDR[$server]}"
    l=$(loadavg)
    lat="$W/lat-${label// /_}-$server-$pct.txt"
    # -v prints "> RCODE name type latency" per answer (and "> T ..." per timeout).
    timeout $((FIXED_SECS + 30)) "${CLIENT_CPU[@]}" dnsperf -s "$ip" -p "$port" -d "$W/q-${label// /_}.txt" \
        -c "$CLIENTS" -T "$THREADS" -q 65535 -Q "$rate" -l "$FIXED_SECS" -n "$QUERIES" -t 2 -v \
        >"$W/fixed.out" 2>&1 || die "dnsperf -Q failed against $server: $(tail -5 "$W/fixed.out")"
    awk '$1 == ">" && $2 != "T" && $2 != "I" {print $NF}' "$W/fixed.out" | sort -g >"$lat"
    out=$(grep -v '^>' "$W/fixed.out")
    echo "$out" >"$W/fixed-${label// /_}-$server-$pct.txt"
    FX_QPS[$key]=$(printf '%.0f' "$(field "Queries per second:" "$out")") FX_LOST[$key]=$(field "Queries lost:" "$out")
    # Percentiles over every query sent: a lost query counts as slower than any answer (an
    # open-loop client's timeouts), so a server that drops queries cannot look fast. "lost"
    # when the percentile falls among them.
    pctl() { awk -v p="$1" -v lost="${FX_LOST[$key]:-0}" '{a[NR] = $1} END {n = NR + lost; i = int(n * p + 0.999999); if (i < 1) i = 1; if (i > NR) print "lost"; else printf "%.3f", a[i] * 1000}' "$lat"; }
    FX_P50[$key]=$(pctl 0.50) FX_P99[$key]=$(pctl 0.99) FX_P999[$key]=$(pctl 0.999)
    FX_LOAD[$key]=$l FX_SENT[$key]=$(field "Queries sent:" "$out")
    # The client kept the schedule when it sent at least 95 % of rate x duration.
    awk -v s="${FX_SENT[$key]}" -v r="$rate" -v d="$FIXED_SECS" 'BEGIN { exit !(s >= 0.95 * r * d) }' ||
        BEHIND+="$label $server $pct%; "
    printf '   %3s%% %-16s %-9s %7s q/s offered, %9s answered/s  p50 %s  p99 %s  p99.9 %s ms  lost %s  load %s\n' \
        "$pct" "$label" "$server" "$rate" "${FX_QPS[$key]}" "${FX_P50[$key]}" "${FX_P99[$key]}" \
        "${FX_P999[$key]}" "${FX_LOST[$key]}" "$l" >&2
}

echo "== maximum rate: dnsperf -c $CLIENTS -T $THREADS -q $OUTSTANDING, ${SECS}s or $QUERIES queries per run, $ROUNDS rounds (load average $(loadavg))" >&2
for ((round = 1; round <= ROUNDS; round++)); do
    for c in "${CASES[@]}"; do
        IFS='|' read -r label _ <<<"$c"
        max_rate "$label" directory
        max_rate "$label" knot
    done
done
for k in "${!QPS[@]}"; do
    ROUND_QPS[$k]=${QPS[$k]% }
    QPS[$k]=$(median "${QPS[$k]}") AVG[$k]=$(median "${AVG[$k]}")
    LOST[$k]=$(median "${LOST[$k]}") LOAD[$k]=$(median "${LOAD[$k]}")
done

echo "== fixed rates: $RATES % of Knot's maximum per query, ${FIXED_SECS}s each" >&2
# pin CPUS PID...: moves every thread of each PID to CPUS.
pin() { local cpus=$1 p; shift; for p in "$@"; do taskset -a -p -c "$cpus" "$p" >/dev/null; done; }
if ((PIN && !SPLIT)); then
    pin 1 "$DIR_PID" "$KNOT_PID"
    CLIENT_CPU=(taskset -c 0)
    echo "   servers on CPU 1 (every thread), dnsperf on CPU 0" >&2
fi
declare -A RATE
for c in "${CASES[@]}"; do
    IFS='|' read -r label _ <<<"$c"
    for pct in $RATES; do
        RATE[$label/$pct]=$(awk -v q="${QPS[$label/knot]}" -v p="$pct" 'BEGIN {printf "%d", q * p / 100}')
        fixed_rate "$label" directory "$pct" "${RATE[$label/$pct]}"
        fixed_rate "$label" knot "$pct" "${RATE[$label/$pct]}"
    done
done

((PIN && !SPLIT)) && pin "0-$(($(nproc) - 1))" "$DIR_PID" "$KNOT_PID"

# --- the HTTP redirector under wrk ---------------------------------------------------------------
curl -s -o /dev/null -w '%{http_code}' "$DIR_HTTP/daily.cvd" | grep -q 302 ||
    die "the redirector does not answer GET /daily.cvd with 302"
echo "== redirector: wrk -t2 -c32 -d${WRK_SECS}s --latency $DIR_HTTP/daily.cvd" >&2
WRK_LOAD=$(loadavg)
WRK_OUT=$(timeout $((WRK_SECS + 30)) wrk -t2 -c32 -d"${WRK_SECS}s" --latency "$DIR_HTTP/daily.cvd")
echo "$WRK_OUT" >"$W/wrk-redirector.txt"
# wrk prints latencies as 812.00us, 1.23ms or 1.01s: in ms.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
WRK_RPS=$(awk '/^Requests\/sec:/ {printf "%d", $2}' <<<"$WRK_OUT")
WRK_P50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$WRK_OUT")")
WRK_P99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$WRK_OUT")")
WRK_ERR=$(awk '/Non-2xx|Socket errors/' <<<"$WRK_OUT")

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    machine_line
    echo "zone: $ZONE, $MIRRORS mirrors registered on the master (192.0.2.1..$MIRRORS), every one in service per a stand-in monitor; $ZONE_RRS records in the directory's AXFR; Knot holds serial $(soa 127.0.0.1 "$KNOT_PORT") (transferred by AXFR)"
    echo "versions: $("$VDBD" --version), $(knotd --version 2>&1 | head -1), $(dnsperf -h 2>&1 | grep -m1 Version)"
    echo "maximum rate: dnsperf -c $CLIENTS -T $THREADS -q $OUTSTANDING, ${SECS}s (or $QUERIES queries) per run, $ROUNDS rounds, medians (load: median 1-min load average at the start of the runs); $( ((SPLIT)) && echo "one core each: every server on CPU 1 with one serving thread, dnsperf on CPU 0" || echo "dnsperf and the servers share the machine's $(nproc) CPUs")"
    echo
    printf '| %-16s | %-9s | %9s | %10s | %8s | %5s | %-18s | %s\n' query server "q/s" "avg ms" lost load "directory/knot q/s" "q/s per round"
    echo "|------------------|-----------|-----------|------------|----------|-------|--------------------|--------------"
    for c in "${CASES[@]}"; do
        IFS='|' read -r label _ <<<"$c"
        for server in directory knot; do
            k="$label/$server" r=
            [[ $server == directory ]] && r="$(ratio "${QPS[$k]}" "${QPS[$label/knot]}")x"
            printf '| %-16s | %-9s | %9s | %10s | %8s | %5s | %-18s | %s\n' "$label" "$server" \
                "${QPS[$k]}" "$(awk -v a="${AVG[$k]}" 'BEGIN {printf "%.3f", a * 1000}')" \
                "${LOST[$k]}" "${LOAD[$k]}" "$r" "${ROUND_QPS[$k]// //}"
        done
    done
    echo
    echo "fixed rates: dnsperf -Q (a share of Knot's median maximum for that query), -c $CLIENTS -T $THREADS, ${FIXED_SECS}s each, latency of every answer (dnsperf -v)$( ((PIN)) && echo "; every server thread on CPU 1, dnsperf alone on CPU 0 (taskset)")"
    echo "client behind the offered rate (sent < 95 %): ${BEHIND:-none}"
    echo
    printf '| %-16s | %4s | %8s | %-9s | %9s | %8s | %8s | %8s | %6s | %5s\n' query rate "q/s" server answered "p50 ms" "p99 ms" "p99.9 ms" lost load
    echo "|------------------|------|----------|-----------|-----------|----------|----------|----------|--------|------"
    for c in "${CASES[@]}"; do
        IFS='|' read -r label _ <<<"$c"
        for pct in $RATES; do
            for server in directory knot; do
                k="$label/$server/$pct"
                printf '| %-16s | %3s%% | %8s | %-9s | %9s | %8s | %8s | %8s | %6s | %5s\n' "$label" "$pct" \
                    "${RATE[$label/$pct]}" "$server" "${FX_QPS[$k]}" "${FX_P50[$k]}" "${FX_P99[$k]}" \
                    "${FX_P999[$k]}" "${FX_LOST[$k]}" "${FX_LOAD[$k]}"
            done
        done
    done
    echo
    echo "redirector: wrk -t2 -c32 -d${WRK_SECS}s --latency GET /daily.cvd (302): $WRK_RPS req/s, p50 $WRK_P50 ms, p99 $WRK_P99 ms, load $WRK_LOAD${WRK_ERR:+; $WRK_ERR}"
    echo
    echo "goals (issue 16):"
    for c in "${CASES[@]}"; do
        IFS='|' read -r label _ <<<"$c"
        printf '  %-5s directory q/s >= 1.0x Knot on %-16s %sx\n' \
            "$(verdict le "${QPS[$label/knot]}" "${QPS[$label/directory]}")" "$label:" \
            "$(ratio "${QPS[$label/directory]}" "${QPS[$label/knot]}")"
    done
    if [[ " $RATES " == *" 50 "* ]]; then
        for c in "${CASES[@]}"; do
            IFS='|' read -r label _ <<<"$c"
            note=
            [[ $BEHIND == *"$label directory 50%"* || $BEHIND == *"$label knot 50%"* ]] &&
                note=" (the client fell behind the rate: not a fair comparison)"
            # "lost" is slower than any answer; when both p99s are lost, fewer lost wins.
            d=${FX_P99[$label/directory/50]} k=${FX_P99[$label/knot/50]}
            if [[ $d == lost && $k == lost ]]; then
                d=${FX_LOST[$label/directory/50]} k=${FX_LOST[$label/knot/50]}
                note+=" (both beyond their losses: $d vs $k lost)"
            fi
            [[ $d == lost ]] && d=1e18
            [[ $k == lost ]] && k=1e18
            printf '  %-5s directory p99 <= Knot p99 at 50%% of Knot max, %-16s %s ms vs %s ms%s\n' \
                "$(verdict le "$d" "$k")" "$label:" \
                "${FX_P99[$label/directory/50]}" "${FX_P99[$label/knot/50]}" "$note"
        done
    else
        echo "  (no 50 % rate in RATES: the p99 goal is not measured)"
    fi
    printf '  %-5s redirector >= 50000 req/s: %s\n' "$(verdict le 50000 "$WRK_RPS")" "$WRK_RPS"
    printf '  %-5s redirector p99 < 5 ms: %s ms\n' "$(verdict lt "$WRK_P99" 5)" "$WRK_P99"
} | tee "$OUT/results-dns.txt"
