#!/usr/bin/env bash
# DNS benchmark (issue 6): the real `vdbd directory` answering a zone built from N mirrors
# registered on a real `vdbd master`, against Knot (knotd) serving the same zone as a secondary
# that transferred it from the directory (AXFR). The same bounded UDP load against each.
#
#   bench/dns.sh                          # everything; results in bench/out/results-dns.txt
#   MIRRORS=50 QUERIES=50000 ROUNDS=5 bench/dns.sh   # rounds: medians are reported
#   NO_BUILD=1 bench/dns.sh               # reuse target/release/{vdbd,vdb} as they are
#
# The load generator is a small Python program (below): PROCS processes, each keeping INFLIGHT
# queries outstanding on one UDP socket, QUERIES queries in all, stopped after MAX_SECS whatever
# the count. It measures queries/s (answered / wall time) and the latency of every answer.
# Needs: cargo, GNU time, knotd, kdig, dig, curl, jq, python3. Never exits non-zero because a
# goal is missed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=1
MIRRORS=${MIRRORS:-20}
QUERIES=${QUERIES:-100000}
ROUNDS=${ROUNDS:-3}
INFLIGHT=${INFLIGHT:-32}
PROCS=${PROCS:-2}
MAX_SECS=${MAX_SECS:-30}
ZONE=${ZONE:-db.bench.test}
NAME=dns.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need_tools cargo knotd kdig dig curl jq python3 awk
((MIRRORS >= 1 && MIRRORS <= 250)) || die "MIRRORS must be 1..250 (addresses 192.0.2.1..250)"
((QUERIES >= 1000 && QUERIES <= 10000000)) || die "QUERIES must be 1000..10000000"
((MAX_SECS >= 1 && MAX_SECS <= 300)) || die "MAX_SECS must be 1..300"
((ROUNDS >= 1 && ROUNDS <= 10)) || die "ROUNDS must be 1..10"

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
start_role "$W/directory" directory "$W/directory.toml"
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
knotd -c "$W/knot/knot.conf" 2>"$W/knot/knot.log" &
PIDS+=("$!")
soa() { dig "@$1" -p "$2" +short "$ZONE" SOA | awk '{print $3}'; }
same_serial() { local a b; a=$(soa "$DIR_IP" "$DIR_PORT"); b=$(soa 127.0.0.1 "$KNOT_PORT"); [[ -n $a && $a == "$b" ]]; }
wait_until 30 same_serial
echo "== knot at 127.0.0.1:$KNOT_PORT holds serial $(soa 127.0.0.1 "$KNOT_PORT")" >&2
dig "@$DIR_IP" -p "$DIR_PORT" +nocmd +nostats "$ZONE" AXFR >"$W/zone-directory.txt"
dig @127.0.0.1 -p "$KNOT_PORT" +nocmd +nostats "$ZONE" AXFR >"$W/zone-knot.txt"
ZONE_RRS=$(grep -vc '^;\|^$' "$W/zone-directory.txt" || true)

# --- the load generator ------------------------------------------------------------------------
cat >"$W/dnsload.py" <<'PY'
"""Bounded UDP DNS load: QUERIES queries over PROCS processes, INFLIGHT outstanding each."""
import multiprocessing as mp, os, random, select, socket, struct, sys, time

def query(qid, labels, qtype):
    q = b"".join(bytes([len(l)]) + l.encode() for l in labels.split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", qtype, 1)

def worker(args):
    host, port, n, inflight, name, qtype, max_secs, seed = args
    rnd = random.Random(seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.connect((host, port))
    s.setblocking(False)
    body = query(0, name, qtype)[2:]
    pending = {}          # id -> send time (ns)
    lat = []              # answer latencies (ns)
    sent = errors = lost = bad = 0
    free_ids = list(range(65536)); rnd.shuffle(free_ids)
    start = time.perf_counter_ns()
    deadline = start + int(max_secs * 1e9)
    def send():
        nonlocal sent
        qid = free_ids.pop()
        pending[qid] = time.perf_counter_ns()
        s.send(struct.pack(">H", qid) + body)
        sent += 1
    while sent < n and len(pending) < inflight:
        send()
    poll = select.poll(); poll.register(s, select.POLLIN)
    while pending:
        now = time.perf_counter_ns()
        if now > deadline:
            lost += len(pending); break
        if not poll.poll(200):
            # Nothing for 200 ms: anything older than 1 s is lost; replace it.
            for qid, t in list(pending.items()):
                if now - t > 1_000_000_000:
                    del pending[qid]; free_ids.insert(0, qid); lost += 1
                    if sent < n: send()
            continue
        while True:
            try:
                data = s.recv(4096)
            except BlockingIOError:
                break
            t = time.perf_counter_ns()
            if len(data) < 12:
                bad += 1; continue
            qid, flags, _, ancount = struct.unpack(">HHHH", data[:8])
            t0 = pending.pop(qid, None)
            if t0 is None:
                bad += 1; continue
            free_ids.insert(0, qid)
            lat.append(t - t0)
            if flags & 0xF != 0 or ancount == 0:
                errors += 1
            if sent < n and time.perf_counter_ns() < deadline:
                send()
    wall = time.perf_counter_ns() - start
    return lat, sent, errors, lost, bad, wall

def main():
    host, port, n, inflight, procs, name, qtype, max_secs = sys.argv[1:9]
    n, inflight, procs, qtype, max_secs = int(n), int(inflight), int(procs), int(qtype), float(max_secs)
    jobs = [(host, int(port), n // procs + (1 if i < n % procs else 0), inflight, name, qtype, max_secs, i)
            for i in range(procs)]
    with mp.Pool(procs) as pool:
        res = pool.map(worker, jobs)
    lat = sorted(x for r in res for x in r[0])
    wall = max(r[5] for r in res) / 1e9
    sent = sum(r[1] for r in res); errors = sum(r[2] for r in res)
    lost = sum(r[3] for r in res); bad = sum(r[4] for r in res)
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] / 1e6 if lat else float("nan")
    print(f"answered={len(lat)} sent={sent} errors={errors} lost={lost} bad={bad} secs={wall:.3f} "
          f"qps={len(lat) / wall:.0f} p50_ms={pct(0.50):.3f} p99_ms={pct(0.99):.3f} max_ms={pct(1.0):.3f}")

if __name__ == "__main__":
    main()
PY

declare -A QPS P50 P99 LOAD NOTE ROUND_QPS
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p; s/^$1=\([^ ]*\).*/\1/p" <<<"$2" | head -1; }
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
load_case() {
    local label=$1 server=$2 ip=$3 port=$4 qname=$5 qtype=$6 key="$1/$2" out l
    l=$(loadavg)
    out=$(timeout $((MAX_SECS + 30)) python3 "$W/dnsload.py" "$ip" "$port" "$QUERIES" "$INFLIGHT" \
        "$PROCS" "$qname" "$qtype" "$MAX_SECS") || die "the load generator failed against $server"
    echo "$out" >"$W/load-${label// /_}-$server-$round.txt"
    QPS[$key]+="$(field qps "$out") " P50[$key]+="$(field p50_ms "$out") "
    P99[$key]+="$(field p99_ms "$out") " LOAD[$key]+="$l "
    NOTE[$key]+="$(field answered "$out")/$(field sent "$out") e$(field errors "$out") l$(field lost "$out"); "
    printf '   round %s %-18s %-9s %8s q/s  p50 %7s ms  p99 %7s ms  load %s  %s\n' "$round" "$label" \
        "$server" "$(field qps "$out")" "$(field p50_ms "$out")" "$(field p99_ms "$out")" "$l" "$out" >&2
}

# Query types: A = 1, TXT = 16, SOA = 6. Directory and Knot alternate per case.
CASES=("database A|database.$ZONE|1" "current.cvd TXT|current.cvd.$ZONE|16" "SOA|$ZONE|6")
echo "== $QUERIES queries per run, $PROCS processes x $INFLIGHT in flight, $ROUNDS rounds (load average $(loadavg))" >&2
for ((round = 1; round <= ROUNDS; round++)); do
    for c in "${CASES[@]}"; do
        IFS='|' read -r label qname qtype <<<"$c"
        load_case "$label" directory "$DIR_IP" "$DIR_PORT" "$qname" "$qtype"
        load_case "$label" knot 127.0.0.1 "$KNOT_PORT" "$qname" "$qtype"
    done
done
for k in "${!QPS[@]}"; do
    ROUND_QPS[$k]=${QPS[$k]% }
    QPS[$k]=$(median "${QPS[$k]}") P50[$k]=$(median "${P50[$k]}")
    P99[$k]=$(median "${P99[$k]}") LOAD[$k]=$(median "${LOAD[$k]}")
done
# answered/sent, errors, lost per round
NOTE_ALL=$(for k in "${!NOTE[@]}"; do echo "$k: ${NOTE[$k]}"; done | sort)

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    machine_line
    echo "zone: $ZONE, $MIRRORS mirrors registered on the master (192.0.2.1..$MIRRORS), every one in service per a stand-in monitor; $ZONE_RRS records in the directory's AXFR; Knot holds serial $(soa 127.0.0.1 "$KNOT_PORT") (transferred by AXFR)"
    echo "versions: $("$VDBD" --version), $(knotd --version 2>&1 | head -1)"
    echo "load: python3 generator, $QUERIES queries per run, $PROCS processes x $INFLIGHT in flight, at most ${MAX_SECS}s, $ROUNDS rounds (medians; load: median 1-min load average at the start of the runs); generator and servers share the machine's $(nproc) CPUs"
    echo
    printf '| %-16s | %-9s | %8s | %8s | %8s | %5s | %-18s | %s\n' query server "q/s" "p50 ms" "p99 ms" load "directory/knot q/s" "q/s per round"
    echo "|------------------|-----------|----------|----------|----------|-------|--------------------|--------------"
    for c in "${CASES[@]}"; do
        IFS='|' read -r label _ _ <<<"$c"
        for server in directory knot; do
            k="$label/$server" r=
            [[ $server == directory ]] && r="$(ratio "${QPS[$k]}" "${QPS[$label/knot]}")x"
            printf '| %-16s | %-9s | %8s | %8s | %8s | %5s | %-18s | %s\n' "$label" "$server" \
                "${QPS[$k]}" "${P50[$k]}" "${P99[$k]}" "${LOAD[$k]}" "$r" "${ROUND_QPS[$k]// //}"
        done
    done
    echo
    echo "answered/sent, e = errors (rcode != 0 or no answer), l = lost, per round:"
    sed 's/^/  /' <<<"$NOTE_ALL"
} | tee "$OUT/results-dns.txt"
