#!/usr/bin/env bash
# File-serving benchmark (issue 4): a real `vdbd mirror` (synced from a real `vdbd master`)
# against nginx serving the same bytes, with wrk; plus the bytes a mirror pulls for one daily
# update against what rsync's delta algorithm transfers for the same update.
#
#   bench/serve.sh                    # everything; results in bench/out/results-serve.txt
#   DURATION=5 ROUNDS=1 CONNS=16 bench/serve.sh   # wrk seconds per case, rounds (median)
#   SERVE_THREADS=2 bench/serve.sh    # the mirror's serve_threads (default: its own, one per CPU)
#   FR_ROUNDS=3 FR_DURATION=10 RATES="25 50 90" FR_CONNS=32 bench/serve.sh
#                                     # the fixed-rate part (oha, coordinated omission corrected;
#                                     # installed in bench/out/tools if missing); FR_ROUNDS=0: none
#   NO_BUILD=1 bench/serve.sh         # reuse target/release/{vdbd,vdb} as they are
#
# Needs: cargo, GNU time, nginx, wrk, rsync, curl, jq, python3 (and oha, installed by the
# script with cargo). Servers bind 127.0.0.1 only;
# every process started here is stopped on exit. Never exits non-zero because a goal is missed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=1
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
BIG_CONNS=${BIG_CONNS:-2}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
SERVE_THREADS=${SERVE_THREADS:-}
RATES=${RATES:-25 50 90}
FR_DURATION=${FR_DURATION:-10}
FR_ROUNDS=${FR_ROUNDS:-3}
FR_CONNS=${FR_CONNS:-$CONNS}
NGINX=${NGINX:-/usr/sbin/nginx}
NAME=serve.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need_tools cargo wrk rsync curl jq python3 awk
[[ -x $NGINX ]] || die "nginx is required at $NGINX (apt-get install nginx-light, or set NGINX=)"
((DURATION >= 1 && DURATION <= 60)) || die "DURATION must be 1..60 seconds"
((ROUNDS >= 1 && ROUNDS <= 10)) || die "ROUNDS must be 1..10"
((FR_DURATION >= 1 && FR_DURATION <= 60)) || die "FR_DURATION must be 1..60 seconds"
((FR_ROUNDS >= 0 && FR_ROUNDS <= 10)) || die "FR_ROUNDS must be 0..10 (0: no fixed-rate runs)"
((FR_CONNS >= 1 && FR_CONNS <= 1024)) || die "FR_CONNS must be 1..1024"
for pct in $RATES; do
    [[ $pct =~ ^[0-9]+$ ]] && ((pct >= 1 && pct <= 100)) || die "RATES are percentages 1..100"
done

mkdir -p "$OUT"
build_net
SYNTH=$OUT/synth-net
synth_db "$SYNTH" --size-mb "$SIZE_MB" --cdiffs 1 --seed "$SEED"
OLD_V=$(cd "$SYNTH" && ls daily-*.cvd | sed 's/daily-\([0-9]*\)\.cvd/\1/' | sort -n | head -1)
NEW_V=$((OLD_V + 1))

W=$OUT/serve
rm -rf "$W"
mkdir -p "$W"/{stage-old,stage-new,local,www,nginx/tmp,rsync}
cleanup() {
    stop_all
    rm -rf "$W/master-data" "$W/mirror-data" "$W/rsync" "$W/www" "$W/stage-old" "$W/stage-new"
}
trap cleanup EXIT

# --- a master and a mirror serving daily-OLD_V, then updated to NEW_V by a push -------------
start_master_with_old_release "$W" "$W/master"

head -c 2048 /dev/urandom >"$W/local/local_2k.bin"
mirror_config "$W/mirror.toml" mirror1 "$MASTER" "$MASTER_PUB" "$W/mirror-data" "$W/local" \
    "${SERVE_THREADS:+serve_threads = $SERVE_THREADS}"
start_role "$W/mirror" mirror "$W/mirror.toml"
MIRROR_PID=$LAST_PID
MIRROR=$(json http "$READY")
echo "== mirror at $MIRROR" >&2
"$VDB" mirror add --master "$MASTER" --token "$ADMIN_TOKEN" mirror1 --base-url "$MIRROR" \
    --push-url "$MIRROR/.well-known/vdbnet/push" --address 127.0.0.1 >/dev/null
wait_until 120 serial_at_least "$MIRROR" "$(master_serial "$MASTER")"

# One daily update: NEW_V's daily.cvd plus its cdiff; the mirror's own counter of the bytes it
# downloaded from masters (every object it fetched, counted as received and hash-checked).
PULLED0=$(metric "$MIRROR" vdb_mirror_pulled_bytes_total)
REUSED0=$(metric "$MIRROR" vdb_mirror_delta_reused_bytes_total)
# CPU seconds (user + system) of the mirror process, from /proc (clock ticks).
mirror_cpu_ticks() { awk '{print $14 + $15}' "/proc/$MIRROR_PID/stat"; }
CPU0=$(mirror_cpu_ticks)
"$VDB" publish --master "$MASTER" --key "$W/publisher.key" \
    "$W/stage-new/daily.cvd" "$W/stage-new/daily-$NEW_V.cdiff" >&2
TARGET_SERIAL=$(master_serial "$MASTER")
wait_until 120 serial_at_least "$MIRROR" "$TARGET_SERIAL"
PULLED=$(($(metric "$MIRROR" vdb_mirror_pulled_bytes_total) - PULLED0))
REUSED=$(($(metric "$MIRROR" vdb_mirror_delta_reused_bytes_total) - REUSED0))
UPDATE_CPU=$(awk -v t=$(($(mirror_cpu_ticks) - CPU0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }')
NEW_CVD_BYTES=$(stat -c %s "$SYNTH/daily-$NEW_V.cvd")
echo "== mirror serves serial $TARGET_SERIAL; pulled $PULLED bytes for the update, re-created $REUSED (delta), $UPDATE_CPU s CPU" >&2

# The same update with rsync's delta algorithm: a local rsync (sender and receiver are two
# processes over a pipe, as over ssh) with --no-whole-file, from a directory holding the new set to
# one holding the old set. "Total bytes sent" + "received" is what crossed the pipe.
mkdir -p "$W/rsync/old" "$W/rsync/new"
cp "$SYNTH/daily-$OLD_V.cvd" "$W/rsync/old/daily.cvd"
cp "$SYNTH/daily-$NEW_V.cvd" "$W/rsync/new/daily.cvd"
cp "$SYNTH/daily-$NEW_V.cdiff" "$W/rsync/new/daily-$NEW_V.cdiff"
rsync -a --no-whole-file --stats "$W/rsync/new/" "$W/rsync/old/" >"$W/rsync/stats.txt"
RS_SENT=$(awk -F': ' '/^Total bytes sent/ {gsub(/,/, "", $2); print $2}' "$W/rsync/stats.txt")
RS_RECV=$(awk -F': ' '/^Total bytes received/ {gsub(/,/, "", $2); print $2}' "$W/rsync/stats.txt")
RS_LITERAL=$(awk -F': ' '/^Literal data/ {gsub(/,| bytes/, "", $2); print $2}' "$W/rsync/stats.txt")
RS_MATCHED=$(awk -F': ' '/^Matched data/ {gsub(/,| bytes/, "", $2); print $2}' "$W/rsync/stats.txt")
cmp -s "$W/rsync/new/daily.cvd" "$W/rsync/old/daily.cvd" || die "rsync did not reproduce daily.cvd"

# --- nginx serving the same bytes ------------------------------------------------------------
ln "$SYNTH/daily-$NEW_V.cvd" "$W/www/daily.cvd"
ln "$W/local/local_2k.bin" "$W/www/local_2k.bin"
# A small file of the synced set too (informational row: the snapshot path, not local_*).
curl -sf "$MIRROR/dns.txt" -o "$W/www/dns.txt" || die "the mirror serves no dns.txt"
chmod -R a+rX "$W/www"
NGINX_PORT=$(free_port)
cat >"$W/nginx/nginx.conf" <<CONF
daemon off;
worker_processes auto;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $W/nginx/tmp/body;
    proxy_temp_path $W/nginx/tmp/proxy;
    fastcgi_temp_path $W/nginx/tmp/fastcgi;
    uwsgi_temp_path $W/nginx/tmp/uwsgi;
    scgi_temp_path $W/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $W/www;
    }
}
CONF
"$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" 2>"$W/nginx/stderr.log" &
PIDS+=("$!")
NGINX_URL=http://127.0.0.1:$NGINX_PORT
wait_until 20 curl -sf -o /dev/null "$NGINX_URL/local_2k.bin"

# Both must serve identical bytes.
for f in daily.cvd local_2k.bin dns.txt; do
    a=$(curl -sf "$MIRROR/$f" | sha256sum | cut -c1-64)
    b=$(curl -sf "$NGINX_URL/$f" | sha256sum | cut -c1-64)
    [[ $a == "$b" ]] || die "mirror and nginx serve different $f"
done
CVD_SIZE=$(stat -c %s "$W/www/daily.cvd")

# --- wrk ---------------------------------------------------------------------------------------
# wrk_case LABEL SERVER URL CONNS HEADER...: one bounded wrk run; appends its req/s, p99 (ms),
# GiB/s and load average to the lists of LABEL/SERVER (medians taken after all rounds).
declare -A RPS P99 GBS LOAD ERRS ROUND_RPS PAIRED
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }
to_gib() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /GB$/) n *= 1; else if (v ~ /MB$/) n /= 1024; else if (v ~ /KB$/) n /= 1048576; else n /= 1073741824; printf "%.3f", n }'; }
wrk_case() {
    local label=$1 server=$2 url=$3 conns=$4; shift 4
    local hdr=() h
    for h in "$@"; do hdr+=(-H "$h"); done
    local key="$label/$server" log="$W/wrk-${label// /_}-$server-$round.txt" l
    l=$(loadavg)
    timeout $((DURATION + 30)) wrk -t"$THREADS" -c"$conns" -d"${DURATION}s" --timeout 10s --latency \
        "${hdr[@]}" "$url" >"$log" 2>&1 || die "wrk failed: $(cat "$log")"
    local rps p99 gbs errs
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$log")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$log")")
    gbs=$(to_gib "$(awk '/^Transfer\/sec:/ {print $2}' "$log")")
    errs=$(awk '/Socket errors|Non-2xx/ {printf "%s ", $0}' "$log")
    RPS[$key]+="$rps " P99[$key]+="$p99 " GBS[$key]+="$gbs " LOAD[$key]+="$l " ERRS[$key]+=$errs
    printf '   round %s %-14s %-6s %10s req/s  p99 %8s ms  %7s GiB/s  load %s %s\n' "$round" "$label" \
        "$server" "$rps" "$p99" "$gbs" "$l" "$errs" >&2
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
# median_hi LIST: the median, the upper of the two middle values for an even count (for a
# "lower is better" goal, an even number of rounds then never flatters the mirror).
median_hi() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR] = $1} END {print a[int(NR / 2) + 1]}'; }
last_modified() { curl -sfI "$1" | awk -F': ' 'tolower($1) == "last-modified" {sub(/\r$/, "", $2); print $2}'; }
LM_MIRROR=$(last_modified "$MIRROR/daily.cvd")
LM_NGINX=$(last_modified "$NGINX_URL/daily.cvd")
[[ -n $LM_MIRROR && -n $LM_NGINX ]] || die "no Last-Modified on daily.cvd (mirror: '$LM_MIRROR', nginx: '$LM_NGINX')"
for u in "$MIRROR" "$NGINX_URL"; do
    lm=$LM_NGINX; [[ $u == "$MIRROR" ]] && lm=$LM_MIRROR
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-Modified-Since: $lm" "$u/daily.cvd")
    [[ $code == 304 ]] || die "$u/daily.cvd answers $code, not 304, to If-Modified-Since: $lm"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Range: bytes=0-511" "$u/daily.cvd")
    [[ $code == 206 ]] || die "$u/daily.cvd answers $code, not 206, to Range: bytes=0-511"
done

CASES=("2KiB GET" "Range 0-511" "304 IMS" "whole CVD" "dns.txt GET")
SERVE_N=$(curl -sf "$MIRROR/metrics" | grep -c '^vdb_mirror_serve_thread_connections_total{' || true)
echo "== wrk -t$THREADS, ${DURATION}s per case, $ROUNDS rounds (load average $(loadavg)); mirror serve threads: $SERVE_N" >&2
# Mirror and nginx run back to back case by case, so both see about the same background load,
# and which one goes first alternates from round to round (drift in the background load then
# favours neither). Each round gives a paired ratio mirror/nginx of two adjacent runs; the goals
# are judged on the median of these paired ratios, which resists a noisy round better than a
# ratio of medians. In the header, @LM@ stands for the Last-Modified each server gives daily.cvd.
pair() {
    local label=$1 path=$2 conns=$3 hdr=${4:-} server base lm order=(mirror nginx) a b
    ((round % 2 == 0)) && order=(nginx mirror)
    for server in "${order[@]}"; do
        base=$MIRROR lm=$LM_MIRROR
        [[ $server == nginx ]] && base=$NGINX_URL lm=$LM_NGINX
        wrk_case "$label" "$server" "$base/$path" "$conns" ${hdr:+"${hdr//@LM@/$lm}"}
    done
    if [[ $label == "whole CVD" ]]; then
        a=${GBS[$label/mirror]% } b=${GBS[$label/nginx]% }
    else
        a=${RPS[$label/mirror]% } b=${RPS[$label/nginx]% }
    fi
    PAIRED[$label]+="$(ratio "${a##* }" "${b##* }") "
}
for ((round = 1; round <= ROUNDS; round++)); do
    pair "2KiB GET" local_2k.bin "$CONNS"
    pair "Range 0-511" daily.cvd "$CONNS" "Range: bytes=0-511"
    pair "304 IMS" daily.cvd "$CONNS" "If-Modified-Since: @LM@"
    pair "whole CVD" daily.cvd "$BIG_CONNS"
    pair "dns.txt GET" dns.txt "$CONNS"
done
for k in "${!PAIRED[@]}"; do
    PAIRED[$k]=$(median "${PAIRED[$k]}")
done
for k in "${!RPS[@]}"; do
    ROUND_RPS[$k]=${RPS[$k]% }
    RPS[$k]=$(median "${RPS[$k]}") P99[$k]=$(median "${P99[$k]}")
    GBS[$k]=$(median "${GBS[$k]}") LOAD[$k]=$(median "${LOAD[$k]}")
done

# --- fixed offered rates: oha at a constant rate, latency corrected ---------------------------
# Each small case again, at RATES percent of nginx's maximum req/s on that case (the median
# measured above), FR_ROUNDS rounds of FR_DURATION seconds, mirror and nginx back to back (order
# alternating by round). oha sends on a fixed schedule whatever the answers do
# (`-q RATE --latency-correction`): a request's latency counts from the moment the schedule
# issued it, so time it waited for a free connection behind a slow answer is counted
# (coordinated omission). `-w` lets the requests in flight at the end finish; `-t 10s` bounds
# each request. Goals are judged on the median of the per-round paired p99 ratios.
declare -A FR_RPS FR_P50 FR_P99 FR_P999 FR_LOAD FR_BAD FR_ROUND_P99 FR_PAIRED FR_RATE FR_SHORT
FR_CASES=("2KiB GET" "Range 0-511" "304 IMS" "dns.txt GET")
declare -A FR_PATH=(["2KiB GET"]=local_2k.bin ["Range 0-511"]=daily.cvd ["304 IMS"]=daily.cvd ["dns.txt GET"]=dns.txt)
declare -A FR_HDR=(["Range 0-511"]="Range: bytes=0-511" ["304 IMS"]="If-Modified-Since: @LM@")
declare -A FR_CODE=(["2KiB GET"]=200 ["Range 0-511"]=206 ["304 IMS"]=304 ["dns.txt GET"]=200)
# oha_case LABEL PCT SERVER URL RATE HEADER...: one bounded oha run at RATE req/s; appends its
# achieved req/s, p50/p99/p99.9 (ms), load average and anything unexpected (errors, other
# status codes) to the lists of LABEL/PCT/SERVER.
oha_case() {
    local label=$1 pct=$2 server=$3 url=$4 rate=$5; shift 5
    local hdr=() h
    for h in "$@"; do hdr+=(-H "$h"); done
    local key="$label/$pct/$server" log="$W/oha-${label// /_}-$pct-$server-$round.json" l
    l=$(loadavg)
    timeout $((FR_DURATION + 40)) "$OHA" --no-tui --output-format json -z "${FR_DURATION}s" -w \
        -t 10s -c "$FR_CONNS" -q "$rate" --latency-correction "${hdr[@]}" "$url" >"$log" \
        2>"$log.err" || die "oha failed: $(cat "$log.err")"
    local v rps p50 p99 p999 bad
    v=$(jq -r --arg code "${FR_CODE[$label]}" '[.summary.requestsPerSec,
        .latencyPercentiles.p50 * 1000, .latencyPercentiles.p99 * 1000,
        .latencyPercentiles["p99.9"] * 1000,
        ([(.statusCodeDistribution | to_entries[] | select(.key != $code) | "\(.value)x\(.key)"),
          (.errorDistribution | to_entries[] | "\(.value)x\(.key | gsub(" "; "_"))")] | join(","))]
        | "\(.[0] | floor) \(.[1] * 1000 | round / 1000) \(.[2] * 1000 | round / 1000) \(.[3] * 1000 | round / 1000) \(.[4])"' "$log") ||
        die "cannot read $log"
    read -r rps p50 p99 p999 bad <<<"$v"
    FR_RPS[$key]+="$rps " FR_P50[$key]+="$p50 " FR_P99[$key]+="$p99 " FR_P999[$key]+="$p999 "
    FR_LOAD[$key]+="$l "
    [[ -n $bad ]] && FR_BAD[$key]+="$bad "
    # The client could not keep the schedule (oha needs a CPU of its own at the highest rates).
    if awk -v g="$rps" -v r="$rate" 'BEGIN { exit !(g < 0.95 * r) }' &&
        [[ " ${FR_SHORT[$label/$pct]:-}" != *" $server "* ]]; then
        FR_SHORT[$label/$pct]+="$server "
    fi
    printf '   round %s %-12s %3s%% %-6s offered %7s got %7s req/s  p50 %7s  p99 %7s  p99.9 %7s ms  load %s %s\n' \
        "$round" "$label" "$pct" "$server" "$rate" "$rps" "$p50" "$p99" "$p999" "$l" "$bad" >&2
}
if ((FR_ROUNDS > 0)); then
    need_oha
    for c in "${FR_CASES[@]}"; do
        for pct in $RATES; do
            FR_RATE[$c/$pct]=$(awk -v m="${RPS[$c/nginx]}" -v p="$pct" 'BEGIN { printf "%d", m * p / 100 }')
        done
    done
    echo "== oha at fixed rates ($RATES % of nginx's maximum), -c$FR_CONNS, ${FR_DURATION}s per run, $FR_ROUNDS rounds (load average $(loadavg))" >&2
    for ((round = 1; round <= FR_ROUNDS; round++)); do
        for c in "${FR_CASES[@]}"; do
            for pct in $RATES; do
                order=(mirror nginx)
                ((round % 2 == 0)) && order=(nginx mirror)
                for server in "${order[@]}"; do
                    base=$MIRROR lm=$LM_MIRROR
                    [[ $server == nginx ]] && base=$NGINX_URL lm=$LM_NGINX
                    h=${FR_HDR[$c]:-}
                    oha_case "$c" "$pct" "$server" "$base/${FR_PATH[$c]}" "${FR_RATE[$c/$pct]}" \
                        ${h:+"${h//@LM@/$lm}"}
                done
                a=${FR_P99[$c/$pct/mirror]% } b=${FR_P99[$c/$pct/nginx]% }
                FR_PAIRED[$c/$pct]+="$(ratio "${a##* }" "${b##* }") "
            done
        done
    done
    for k in "${!FR_PAIRED[@]}"; do
        FR_PAIRED[$k]=$(median_hi "${FR_PAIRED[$k]}")
    done
    for k in "${!FR_RPS[@]}"; do
        FR_ROUND_P99[$k]=${FR_P99[$k]% }
        FR_RPS[$k]=$(median "${FR_RPS[$k]}") FR_P50[$k]=$(median "${FR_P50[$k]}")
        FR_P99[$k]=$(median "${FR_P99[$k]}") FR_P999[$k]=$(median "${FR_P999[$k]}")
        FR_LOAD[$k]=$(median "${FR_LOAD[$k]}")
    done
fi

# --- report ----------------------------------------------------------------------------------
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    machine_line
    echo "database: $STAMP; daily.cvd (version $NEW_V) $CVD_SIZE bytes; local_2k.bin 2048 bytes (mirror: from local_dir); dns.txt $(stat -c %s "$W/www/dns.txt") bytes (mirror: from the synced set; informational, no goal)"
    echo "versions: $("$VDBD" --version 2>/dev/null || echo vdbd), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "wrk: -t$THREADS -c$CONNS (whole CVD: -c$BIG_CONNS) -d${DURATION}s --latency, $ROUNDS rounds, mirror and nginx back to back (order alternating by round); medians (load: median 1-min load average at the start of the runs); mirror/nginx = median of the per-round paired ratios; client, mirror ($SERVE_N serve threads) and nginx ($(nproc) workers) share the machine's $(nproc) CPUs"
    echo
    printf '| %-12s | %-6s | %10s | %9s | %8s | %5s | %-16s | %s\n' case server "req/s" "p99 ms" "GiB/s" load "mirror/nginx" "req/s per round"
    echo "|--------------|--------|------------|-----------|----------|-------|------------------|----------------"
    for c in "${CASES[@]}"; do
        for server in mirror nginx; do
            k="$c/$server" r=
            if [[ $server == mirror ]]; then
                if [[ $c == "whole CVD" ]]; then
                    r="${PAIRED[$c]}x GiB/s"
                else
                    r="${PAIRED[$c]}x req/s"
                fi
            fi
            printf '| %-12s | %-6s | %10s | %9s | %8s | %5s | %-16s | %s %s\n' "$c" "$server" "${RPS[$k]}" \
                "${P99[$k]}" "${GBS[$k]}" "${LOAD[$k]}" "$r" "${ROUND_RPS[$k]// //}" "${ERRS[$k]}"
        done
    done
    if ((FR_ROUNDS > 0)); then
        echo
        echo "fixed offered rates: oha $OHA_VERSION --no-tui -c$FR_CONNS -z${FR_DURATION}s -w -q RATE --latency-correction (latency from each request's scheduled start: coordinated omission counted), RATE = $RATES % of nginx's median max req/s above; $FR_ROUNDS rounds, mirror and nginx back to back (order alternating by round); medians; mirror/nginx p99 = median of the per-round paired ratios (the upper middle one for an even number of rounds); got/s below 95 % of the offered rate means the client fell behind its schedule (its latency still counts from the schedule)"
        echo
        printf '| %-12s | %4s | %7s | %-6s | %8s | %8s | %8s | %8s | %5s | %-13s | %s\n' case rate offered server "got/s" "p50 ms" "p99 ms" "p99.9 ms" load "mirror/nginx" "p99 per round"
        echo "|--------------|------|---------|--------|----------|----------|----------|----------|-------|---------------|--------------"
        for c in "${FR_CASES[@]}"; do
            for pct in $RATES; do
                for server in mirror nginx; do
                    k="$c/$pct/$server" r=
                    [[ $server == mirror ]] && r="${FR_PAIRED[$c/$pct]}x p99"
                    printf '| %-12s | %3s%% | %7s | %-6s | %8s | %8s | %8s | %8s | %5s | %-13s | %s %s\n' "$c" "$pct" \
                        "${FR_RATE[$c/$pct]}" "$server" "${FR_RPS[$k]}" "${FR_P50[$k]}" "${FR_P99[$k]}" \
                        "${FR_P999[$k]}" "${FR_LOAD[$k]}" "$r" "${FR_ROUND_P99[$k]// //}" "${FR_BAD[$k]:-}"
                done
            done
        done
    fi
    echo
    echo "one daily update ($OLD_V -> $NEW_V: daily.cvd + daily-$NEW_V.cdiff, $(stat -c %s "$SYNTH/daily-$NEW_V.cdiff") bytes cdiff):"
    echo "  mirror pulled (vdb_mirror_pulled_bytes_total delta): $PULLED bytes ($(awk -v p="$PULLED" -v n="$NEW_CVD_BYTES" 'BEGIN { printf "%.2f", 100 * p / n }') % of the $NEW_CVD_BYTES-byte CVD)"
    echo "  mirror re-created by delta transfer (vdb_mirror_delta_reused_bytes_total delta): $REUSED bytes; mirror CPU during the update: $UPDATE_CPU s"
    echo "  rsync -a --no-whole-file (local, delta algorithm):   $((RS_SENT + RS_RECV)) bytes over the pipe (sent $RS_SENT, received $RS_RECV; literal $RS_LITERAL, matched $RS_MATCHED)"
    echo "  mirror / rsync: $(ratio "$PULLED" $((RS_SENT + RS_RECV)))x"
    echo
    echo "goals:"
    for c in "2KiB GET" "Range 0-511" "304 IMS" "dns.txt GET"; do
        x=${PAIRED[$c]}
        echo "  $(verdict le 1.0 "$x") $c: mirror >= 1.0x nginx req/s (paired median ${x}x; ratio of medians $(ratio "${RPS[$c/mirror]}" "${RPS[$c/nginx]}")x; p99 ratio $(ratio "${P99[$c/mirror]}" "${P99[$c/nginx]}")x)"
    done
    x=${PAIRED[whole CVD]}
    echo "  $(verdict le 0.9 "$x") whole CVD: mirror >= 0.9x nginx GiB/s (paired median ${x}x; ratio of medians $(ratio "${GBS[whole CVD/mirror]}" "${GBS[whole CVD/nginx]}")x)"
    if ((FR_ROUNDS > 0)); then
        for c in "${FR_CASES[@]}"; do
            for pct in $RATES; do
                ((pct >= 50)) || continue
                x=${FR_PAIRED[$c/$pct]} short=
                [[ -n ${FR_SHORT[$c/$pct]:-} ]] && short="; the client fell behind the rate in some round, against: ${FR_SHORT[$c/$pct]% }"
                echo "  $(verdict le "$x" 1.0) $c at $pct % of nginx's max (${FR_RATE[$c/$pct]} req/s): mirror p99 <= nginx's (paired median ${x}x; medians ${FR_P99[$c/$pct/mirror]} vs ${FR_P99[$c/$pct/nginx]} ms$short)"
            done
        done
    fi
} | tee "$OUT/results-serve.txt"
