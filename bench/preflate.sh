#!/usr/bin/env bash
# Issue 18 measurement: what would exact reconstruction of an official (sigtool-built, one-segment)
# CVD save a mirror? A mirror holding release N and the cdiff to N+1 knows N+1's members; with
# sigtool's tar dialect (derivable) and preflate-rs's correction data it can re-create N+1's exact
# signed bytes, so it would pull cdiff + correction + 512-byte header instead of the whole CVD.
#
#   bench/preflate.sh                # 60 MiB synthetic database; table in bench/out/preflate.txt
#   SIZE_MB=10 bench/preflate.sh     # a smaller database
#
# Steps: build vdb and bench/preflate (a standalone cargo project, preflate-rs pinned in its own
# Cargo.lock); `vdb db synth --cdiffs 1`; unpack daily-27000/27001 and rebuild each with the real
# sigtool (Debian's and ClamAV 1.5.3) as an unsigned .cud, so the gzip stream is zlib's as in
# official CVDs; for those and ClamAV's official test CVDs (fixtures): preflate the deflate body
# (`split`), then re-create the whole container from the members alone + correction + header
# (`recreate`), compared byte for byte; the mirror's path end to end (base members + the cdiff's
# script run by `sigtool --run-cdiff` -> recreate) for the 60 MiB update; the tar headers of the
# two versions side by side. The same containers are also compressed again without any correction
# data, by zlib-rs and by C zlib (python3's) with sigtool's settings (level 9, Z_FILTERED, memLevel
# 8): where that is byte-identical a mirror needs no correction at all. CPU seconds and peak RSS by
# GNU time.
#
# Needs: cargo, GNU time, sigtool (Debian's ClamAV), ../shared/tools/clamav-1.5.3 (optional),
# ../shared/fixtures/clamav, python3, gzip. Exits non-zero only on a broken setup or when a
# re-created container is not byte-identical.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=1
NAME=preflate.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need_tools cargo sigtool python3 gzip awk diff
SHARED=${SHARED:-$ROOT/../shared}
FIX=$SHARED/fixtures/clamav
CLAMAV153=$SHARED/tools/clamav-1.5.3
[[ -f $FIX/test-6.cvd ]] || die "ClamAV's test CVDs not found in $FIX (set SHARED=)"

mkdir -p "$OUT"
echo "== building vdb (release)" >&2
(cd "$ROOT" && cargo build --release --locked -p vdb-cli) >&2
echo "== building bench/preflate (release, its own lock file)" >&2
cargo build --release --locked --manifest-path "$ROOT/bench/preflate/Cargo.toml" \
    --target-dir "$TARGET_DIR/preflate" >&2
TOOL=$TARGET_DIR/preflate/release/preflate-bench
ZLIB_RS_VERSION=$(awk '/^name = "zlib-rs"/ {getline; print $3}' "$ROOT/bench/preflate/Cargo.lock" | tr -d '"')
PREFLATE_VERSION=$(awk '/^name = "preflate-rs"/ {getline; print $3}' "$ROOT/bench/preflate/Cargo.lock" | tr -d '"')

SYNTH=$OUT/synth-preflate
synth_db "$SYNTH" --size-mb "$SIZE_MB" --cdiffs 1 --seed "$SEED"
V0=$(cd "$SYNTH" && ls daily-*.cvd | sed 's/daily-\([0-9]*\)\.cvd/\1/' | sort -n | head -1)
V1=$((V0 + 1))
KEYS=$SYNTH/synth.key.pub

W=$OUT/preflate
rm -rf "$W" && mkdir -p "$W/empty"

# timed LABEL COMMAND...: runs COMMAND under GNU time (stdout to $W/LABEL.out); sets CPU (user +
# system seconds), WALL and RSS_MB.
timed() {
    local label=$1; shift
    /usr/bin/time -f '%U %S %e %M' -o "$W/$label.time" "$@" >"$W/$label.out" 2>"$W/$label.err" ||
        { cat "$W/$label.err" >&2; die "failed: $*"; }
    read -r u s WALL m <"$W/$label.time"
    CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
    RSS_MB=$(mb "$m")
}

# field KEY FILE: the value of KEY=... in the tool's one-line output.
field() { tr ' ' '\n' <"$2" | sed -n "s/^$1=//p" | head -n 1; }

# sigtool_build LABEL SIGTOOL...: rebuilds daily-$V0 and daily-$V1 with that sigtool as
# $W/LABEL/daily-V.cud (the members of vdb's CVD, sigtool's own daily.info).
sigtool_build() {
    local label=$1 v d; shift
    mkdir -p "$W/$label"
    for v in "$V0" "$V1"; do
        d=$W/$label/src-$v
        "$VDB" db unpack --keys "$KEYS" "$SYNTH/daily-$v.cvd" "$d" >/dev/null
        rm -f "$d/daily.info"
        echo "== $label: sigtool --build=daily.cud --unsigned --cvd-version=$v" >&2
        (cd "$d" && SIGNDUSER=bench "$@" --build=daily.cud --unsigned --cvd-version="$v" \
            --no-cdiff --datadir="$W/empty" </dev/null >"$W/$label/build-$v.log" 2>&1) ||
            { tail -n 20 "$W/$label/build-$v.log" >&2; die "$label sigtool --build failed"; }
        mv "$d/daily.cud" "$W/$label/daily-$v.cud"
        rm -rf "$d"
    done
}

CONTAINERS=("$FIX"/test-[1-6].cvd)
sigtool_build sigtool-1.4 sigtool
CONTAINERS+=("$W/sigtool-1.4/daily-$V0.cud" "$W/sigtool-1.4/daily-$V1.cud")
SIGTOOL_VERSIONS="Debian $(sigtool --version)"
if [[ -x $CLAMAV153/bin/sigtool ]]; then
    sigtool_build sigtool-1.5 env CVD_CERTS_DIR="$CLAMAV153/certs" "$CLAMAV153/bin/sigtool"
    CONTAINERS+=("$W/sigtool-1.5/daily-$V1.cud")
    SIGTOOL_VERSIONS+=", $(CVD_CERTS_DIR=$CLAMAV153/certs "$CLAMAV153/bin/sigtool" --version)"
fi

# --- per container: split and re-create from the members ------------------------------------
ROWS=()
SPLITS=()
i=0
for c in "${CONTAINERS[@]}"; do
    i=$((i + 1))
    name=$(basename "$(dirname "$c")")/$(basename "$c")
    echo "== $name: split, recreate" >&2
    timed "split-$i" "$TOOL" split "$c" "$W/split-$i"
    SPLIT_CPU=$CPU SPLIT_RSS=$RSS_MB
    SPLITS[i]=$CPU
    mkdir -p "$W/members-$i"
    (cd "$W/members-$i" && sigtool --unpack "$c" >/dev/null)
    timed "recreate-$i" "$TOOL" recreate "$c" "$W/members-$i" "$W/split-$i/correction.bin"
    REC_CPU=$CPU REC_RSS=$RSS_MB
    # Zero correction data: the tar compressed again by zlib-rs, and by C zlib (python3's), with
    # sigtool's settings (level 9, Z_FILTERED, memLevel 8, 32 KiB window).
    timed "zlib-$i" "$TOOL" zlib "$c" "$W/members-$i"
    ZLIB_CPU=$CPU ZLIB_RSS=$RSS_MB
    CZLIB=$(python3 - "$c" <<'PY'
import sys, zlib
c = open(sys.argv[1], "rb").read()
tar = zlib.decompressobj(31).decompress(c[512:])
o = zlib.compressobj(9, zlib.DEFLATED, 31, 8, zlib.Z_FILTERED)
print(str(o.compress(tar) + o.flush() == c[512:]).lower())
PY
)
    S=$W/split-$i.out R=$W/recreate-$i.out Z=$W/zlib-$i.out
    size=$(field container "$S") corr=$(field correction "$S")
    ROWS+=("$(printf '| %-28s | %8s | %9s | %9s | %7s | %6s | %6s | %6s | %6s | %6s | %5s | %5s | %6s | %5s |' \
        "$name" "$size" "$(field plain "$S")" "$corr" \
        "$(awk -v a="$corr" -v b="$size" 'BEGIN { printf "%.3f", 100 * a / b }')" \
        "$SPLIT_CPU" "$SPLIT_RSS" "$REC_CPU" "$REC_RSS" "$(field identical "$R")" \
        "$ZLIB_CPU" "$ZLIB_RSS" "$(field identical "$Z")" "$CZLIB")")
    [[ $(field identical "$R") == true ]] || die "$name: re-created container differs"
    rm -rf "$W/members-$i" "$W/split-$i/plain.tar"
    [[ $c == "$W/sigtool-1.4/daily-$V0.cud" ]] && BASE_I=$i
    [[ $c == "$W/sigtool-1.4/daily-$V1.cud" ]] && NEW_I=$i
done

# --- the tar headers of the two versions (sigtool 1.4) ---------------------------------------
"$TOOL" split "$W/sigtool-1.4/daily-$V0.cud" "$W/tar-$V0" >/dev/null
"$TOOL" split "$W/sigtool-1.4/daily-$V1.cud" "$W/tar-$V1" >/dev/null
"$TOOL" tar "$W/tar-$V0/plain.tar" >"$W/tar-$V0.txt"
"$TOOL" tar "$W/tar-$V1/plain.tar" >"$W/tar-$V1.txt"
TAR_DIFF=$(diff <(grep '^member' "$W/tar-$V0.txt" | sed 's/ size=[0-9]*//') \
    <(grep '^member' "$W/tar-$V1.txt" | sed 's/ size=[0-9]*//') || true)
rm -rf "$W/tar-$V0" "$W/tar-$V1"

# --- the mirror's path for the daily update ---------------------------------------------------
# The master's cdiff between the two sigtool builds (signed with the synthetic key: same size as
# an official one), its script run by ClamAV on the base's members, then the exact container
# re-created from the result + correction + the new 512-byte header.
echo "== the mirror's path: cdiff $V0 -> $V1, sigtool --run-cdiff, recreate" >&2
M=$W/mirror && mkdir -p "$M/old" "$M/new" "$M/base"
(cd "$M/old" && sigtool --unpack "$W/sigtool-1.4/daily-$V0.cud" >/dev/null)
(cd "$M/new" && sigtool --unpack "$W/sigtool-1.4/daily-$V1.cud" >/dev/null)
"$VDB" db diff --keys "$SYNTH/synth.key" --name daily "$M/old" "$M/new" -o "$M/daily-$V1.cdiff" >/dev/null
"$VDB" db diff --name daily "$M/old" "$M/new" -o "$M/daily-$V1.script" >/dev/null
cp -a "$M/old/." "$M/base/"
timed apply sh -c 'cd "$1" && sigtool --run-cdiff="$2"' sh "$M/base" "$M/daily-$V1.script"
APPLY_CPU=$CPU APPLY_RSS=$RSS_MB
diff -r "$M/base" "$M/new" >/dev/null || die "the cdiff's script did not give the new members"
timed mirror-recreate "$TOOL" recreate "$W/sigtool-1.4/daily-$V1.cud" "$M/base" \
    "$W/split-$NEW_I/correction.bin"
[[ $(field identical "$W/mirror-recreate.out") == true ]] || die "mirror path: not identical"
MREC_CPU=$CPU MREC_RSS=$RSS_MB
timed mirror-zlib "$TOOL" zlib "$W/sigtool-1.4/daily-$V1.cud" "$M/base"
MZLIB_CPU=$CPU MZLIB_RSS=$RSS_MB MZLIB=$(field identical "$W/mirror-zlib.out")

# Control: the same tar at zlib level 9 with the default strategy (not what sigtool writes), to
# show how much of the correction data is preflate-rs not modelling Z_FILTERED.
python3 - "$W/sigtool-1.4/daily-$V1.cud" "$W/control.cud" <<'PY'
import sys, zlib
c = open(sys.argv[1], "rb").read()
tar = zlib.decompressobj(31).decompress(c[512:])
o = zlib.compressobj(9, zlib.DEFLATED, 31, 8, zlib.Z_DEFAULT_STRATEGY)
open(sys.argv[2], "wb").write(c[:512] + o.compress(tar) + o.flush())
PY
"$TOOL" split "$W/control.cud" "$W/control" >"$W/control.out"
CONTROL="$(field container "$W/control.out") bytes, correction $(field correction "$W/control.out") bytes"
rm -rf "$W/control" "$W/control.cud"

CVD=$(stat -c %s "$W/sigtool-1.4/daily-$V1.cud")
CDIFF=$(stat -c %s "$M/daily-$V1.cdiff")
CORR=$(stat -c %s "$W/split-$NEW_I/correction.bin")
PULL=$((CDIFF + CORR + 512))

{
    echo "exact reconstruction of sigtool-built CVDs (issue 18), $(date -u '+%Y-%m-%d %H:%M UTC')"
    machine_line
    echo "database: $STAMP; rebuilt by $SIGTOOL_VERSIONS (--unsigned); preflate-rs $PREFLATE_VERSION"
    echo
    printf '| %-28s | %8s | %9s | %9s | %7s | %6s | %6s | %6s | %6s | %6s | %5s | %5s | %6s | %5s |\n' \
        container bytes plain correction "corr %" "split" "RSS" "recr." "RSS" "exact" "zlib" "RSS" "zlib-rs" "C zlib"
    printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..30})" \
        ---------- ----------- ----------- --------- -------- -------- -------- -------- -------- ------- ------- -------- -------
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "(preflate-rs: split = decompress + estimate + correction data (master side); recr. = tar from"
    echo " the member files in sigtool's order and dialect + deflate re-created from it and the"
    echo " correction + gzip header/trailer + 512-byte header, compared byte for byte (mirror side);"
    echo " exact = recr. identical. zlib = the same with no correction: zlib-rs $ZLIB_RS_VERSION at level 9,"
    echo " Z_FILTERED, memLevel 8; zlib-rs = identical?; C zlib = python3's zlib $(python3 -c 'import zlib; print(zlib.ZLIB_RUNTIME_VERSION)')"
    echo " with the same settings identical? Times: CPU s (user + system), RSS: peak MB, GNU time)"
    echo
    echo "tar headers, daily-$V0 vs daily-$V1 (sigtool 1.4), every field but size:" \
        "$(if [[ -z $TAR_DIFF ]]; then echo "identical member lists and fields"; else echo "differ:"; fi)"
    [[ -z $TAR_DIFF ]] || echo "$TAR_DIFF"
    grep '^tar ' "$W/tar-$V1.txt" | sed 's/^/  /'
    grep -c '^member.*mode="" uid="" gid="" mtime="" type=0 magic="" other_nonzero_bytes=0' "$W/tar-$V1.txt" |
        sed 's/^/  members with every field but name, size, checksum zero: /'
    echo
    echo "one daily update, daily-$V0 -> daily-$V1 (sigtool 1.4 build):"
    echo "  whole CVD                         $CVD bytes"
    echo "  cdiff (signed, as served)         $CDIFF bytes"
    echo "  correction data                   $CORR bytes"
    echo "  header                            512 bytes"
    echo "  tar metadata                      0 bytes (derivable: see above)"
    printf '  pulled with exact reconstruction  %s bytes = %s %% of the CVD (without the cdiff, which\n' \
        "$PULL" "$(awk -v a="$PULL" -v b="$CVD" 'BEGIN { printf "%.3f", 100 * a / b }')"
    printf '                                    a mirror serves anyway: %s bytes = %s %%)\n' \
        "$((CORR + 512))" "$(awk -v a="$((CORR + 512))" -v b="$CVD" 'BEGIN { printf "%.4f", 100 * a / b }')"
    echo "  mirror CPU: sigtool --run-cdiff $APPLY_CPU s (peak $APPLY_RSS MB) + recreate $MREC_CPU s (peak $MREC_RSS MB); byte-identical"
    printf '  with zlib-rs instead (no correction): %s bytes = %s %% of the CVD; mirror CPU %s s (peak %s MB); byte-identical: %s\n' \
        "$((CDIFF + 512))" "$(awk -v a="$((CDIFF + 512))" -v b="$CVD" 'BEGIN { printf "%.3f", 100 * a / b }')" \
        "$MZLIB_CPU" "$MZLIB_RSS" "$MZLIB"
    echo "  control: the same tar at zlib -9, default strategy (not sigtool's): $CONTROL"
    echo "  master CPU per release: split ${SPLITS[NEW_I]} s (peak RSS in the table)"
    echo "  goal (issue 18): each mirror pulls <= 5 % of the CVD: $(verdict le "$PULL" "$((CVD / 20))")"
} | tee "$OUT/preflate.txt"
