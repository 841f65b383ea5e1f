#!/usr/bin/env bash
# cdiff-chain benchmark: applying a long chain of large cdiffs to the synthetic 60 MiB daily
# database, vdb against the real `sigtool --run-cdiff` on the same scripts; the updater itself
# (`vdb-update` against a local HTTP mirror serving the chain) on the same chain; the same
# `vdb db apply` on a smaller database (peak memory must not follow the database's size); plus
# the bytes a daily update downloads through cdiffs against a whole-CVD download.
#
#   bench/cdiff.sh                  # everything; results in bench/out/results-cdiff.txt
#   CHAIN=20 bench/cdiff.sh         # chain length (default 10)
#   SMALL_MB=15 bench/cdiff.sh      # size of the smaller database (default 15)
#   RUNS=5 SIZE_MB=10 FRESH=1 ...   # as in bench/verify.sh
#
# Needs: cargo, GNU time, sigtool (ClamAV), python3 (to take the script out of a signed cdiff
# for sigtool, and `python3 -m http.server` as the mirror), gzip, tar. Never exits non-zero
# because a goal is missed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-3}
CHAIN=${CHAIN:-10}
SMALL_MB=${SMALL_MB:-15}
NAME=cdiff.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
UPDATER=$TARGET_DIR/release/vdb-update
SCRATCH=$OUT/scratch-cdiff
need_tools cargo sigtool python3 gzip tar tail awk sort

mkdir -p "$OUT"
echo "== building vdb and vdb-update (release)" >&2
(cd "$ROOT" && cargo build --release --locked -p vdb-cli --bin vdb -p vdb-update --bin vdb-update) >&2

SYNTH=$OUT/synth-chain
synth_db "$SYNTH" --size-mb "$SIZE_MB" --cdiffs "$CHAIN" --seed "$SEED"
BIG_STAMP=$STAMP
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

# The mirror for the updater row: the newest daily.cvd (for the header probe) and the chain's
# cdiffs, served by python's http.server on a free port; stopped on exit.
WWW=$OUT/www-cdiff
rm -rf "$WWW" && mkdir -p "$WWW"
ln -s "$SYNTH/daily-$NEW_V.cvd" "$WWW/daily.cvd"
for c in "${CDIFFS[@]}"; do ln -s "$c" "$WWW/"; done
PORT=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$WWW" "$PORT" >"$OUT/http-cdiff.log" 2>&1 &
PIDS+=("$!")
trap stop_all EXIT
wait_until 10 python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/daily-$NEW_V.cdiff').read()"
# The updater finds the version by a header probe (no DNS), downloads the cdiffs and applies them
# from the installed daily.cvd (copied in, untimed) to a new daily.cld, which it checks again
# before installing it.
UPDATE_CONF=$OUT/update-cdiff.toml
cat >"$UPDATE_CONF" <<CONF
database_directory = "$SCRATCH/run/db"
mirrors = ["http://127.0.0.1:$PORT"]
dns = false
databases = ["daily"]
max_attempts = 1
health_memory = false
key_set = "$KEYS"
CONF

prepare() {
    if [[ $1 == sigtool* ]]; then cp -a "$SCRIPTS/base/." .; fi
    if [[ $1 == vdb-update* ]]; then mkdir db && cp "$BASE" db/daily.cvd; fi
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
UPDATE_LABEL="vdb-update (probe, download, apply, CLD)"
measure "$UPDATE_LABEL" @RUN@ "$UPDATER" --config="$UPDATE_CONF"
grep -q "daily.cld updated" "$OUT/last.out" "$OUT/last.err" ||
    die "vdb-update did not update through the cdiffs (see $OUT/last.out, $OUT/last.err)"

# Memory follows the chain (the cdiffs and what their scripts say are held), not the database:
# one cdiff on the big database and on a smaller one (whose cdiffs are as large, relative to it).
SMALL=$OUT/synth-chain-small
synth_db "$SMALL" --size-mb "$SMALL_MB" --cdiffs "$CHAIN" --seed "$SEED"
SMALL_STAMP=$STAMP
SMALL_BASE_V=$(cd "$SMALL" && ls daily-*.cvd | sed 's/daily-\([0-9]*\)\.cvd/\1/' | sort -n | head -1)
ONE_BIG="vdb db apply x1, ${SIZE_MB} MiB database"
measure "$ONE_BIG" @RUN@ "$VDB" db apply --keys "$KEYS" "$BASE" "${CDIFFS[0]}" -o out.cld
ONE_SMALL="vdb db apply x1, ${SMALL_MB} MiB database"
measure "$ONE_SMALL" @RUN@ \
    "$VDB" db apply --keys "$SMALL/synth.key.pub" "$SMALL/daily-$SMALL_BASE_V.cvd" \
    "$SMALL/daily-$((SMALL_BASE_V + 1)).cdiff" -o out.cld
rm -rf "$SCRATCH"
stop_all

CVD_BYTES=$(stat -c %s "$SYNTH/daily.cvd")
ONE_CDIFF=$(stat -c %s "$SYNTH/daily-$NEW_V.cdiff")
ALL_CDIFF=0
for c in "${CDIFFS[@]}"; do ALL_CDIFF=$((ALL_CDIFF + $(stat -c %s "$c"))); done
{
    echo "cdiff-chain benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    machine_line
    echo "database: $BIG_STAMP; base daily-$BASE_V.cvd $(stat -c %s "$BASE") bytes, chain of $CHAIN cdiffs to $NEW_V"
    echo "smaller database: $SMALL_STAMP; base $(stat -c %s "$SMALL/daily-$SMALL_BASE_V.cvd") bytes"
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
    U=${MED[$UPDATE_LABEL]}
    printf '  %-4s vdb-update (probe, downloads, apply, CLD, check) in half of sigtool'"'"'s time or less (%sx)\n' \
        "$(verdict le "$(ratio "$U" "$S")" 0.5)" "$(ratio "$U" "$S")"
    BIG=${RSS["vdb db apply (verify + apply + CLD)"]}
    UPR=${RSS[$UPDATE_LABEL]}
    printf '  %-4s vdb db apply and vdb-update peak RSS under 64 MB (%s MB, %s MB)\n' \
        "$(verdict lt "$((BIG > UPR ? BIG : UPR))" $((64 * 1024)))" "$(mb "$BIG")" "$(mb "$UPR")"
    A1=${RSS[$ONE_BIG]}
    A2=${RSS[$ONE_SMALL]}
    printf '  %-4s peak RSS does not follow the database size: one cdiff on %s MiB %s MB, on %s MiB %s MB (within 4 MB)\n' \
        "$(verdict lt "$((A1 > A2 ? A1 - A2 : A2 - A1))" $((4 * 1024)))" \
        "$SIZE_MB" "$(mb "$A1")" "$SMALL_MB" "$(mb "$A2")"
} | tee "$OUT/results-cdiff.txt"
echo "(raw timings: $OUT/raw-$NAME.tsv)" >&2
