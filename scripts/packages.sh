#!/usr/bin/env bash
# Builds the Debian packages `vdbnet` (vdbd, vdb, the vdbd@ units, /etc/vdbnet examples) and
# `vdb-update` (the client and its timer) with cargo-deb, then checks them on this machine:
# installs both with dpkg -i, runs every binary's --version, `systemd-analyze verify` on every
# installed unit, `vdbd <role> --check` on every installed config as the user `vdbnet`, upgrades
# over an edited conffile (the edit must survive), and purges both again so that the machine is
# as before (the user `vdbnet` too, when this script made it). Needs root (CI is root) or sudo.
#
#   scripts/packages.sh             the binaries `cargo test --workspace` built (dev profile),
#                                   fast compression: the CI check. Packages in target/debian/.
#   scripts/packages.sh --release   release binaries, each package built on its own: for real
#                                   use (a full release build).
#   scripts/packages.sh --build-only   build the packages, install nothing.
#
# Fails loudly (non-zero, the reason last) on any missing tool or failed check.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=dev
CHECK=1
for arg in "$@"; do
  case "$arg" in
    --release) PROFILE=release ;;
    --build-only) CHECK=0 ;;
    *) echo "usage: $0 [--release] [--build-only]" >&2; exit 2 ;;
  esac
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
TARGET="${CARGO_TARGET_DIR:-target}"
OUT="$TARGET/debian"
start=$(date +%s)
step() { echo "== packages: $* ($(( $(date +%s) - start )) s)"; }
fail() { echo "packages.sh: FAILED: $*" >&2; exit 1; }

command -v cargo-deb >/dev/null \
  || fail "cargo-deb is missing: cargo install cargo-deb --locked (scripts/test-deps.sh does)"
for tool in dpkg dpkg-deb systemd-analyze adduser; do
  command -v "$tool" >/dev/null || fail "$tool is missing (a Debian machine with systemd)"
done

# Release: each binary built on its own (`-p`), as a host gets it: vdb-update then links exactly
# its own dependencies' features (no signing code), not the union a workspace build makes.
# Dev (CI): the binaries `cargo test --workspace` built and ran, as they are: the same command
# with --no-run is a no-op after the tests (it only rebuilds what changed since), where a
# `cargo build -p` per package would compile the crates whose features differ again (measured:
# 80 s for vdbd alone, on top of ~20 s for the rest of this script).
if [ "$PROFILE" = release ]; then
  step "building the binaries (release profile, one package at a time)"
  for p in vdbd vdb-cli vdb-update; do
    cargo build --locked --release -p "$p" --bins
  done
else
  step "the test build's binaries (cargo test --workspace --no-run: up to date?)"
  if ! built=$(cargo test --workspace --locked --no-run 2>&1); then
    echo "$built"
    fail "cargo test --workspace --no-run failed (above)"
  fi
  grep -v '^ *Executable' <<<"$built" || true
fi
DEB_ARGS=(--no-build --locked --profile "$PROFILE" --strip --no-dbgsym -o "$OUT")
[ "$PROFILE" = release ] || DEB_ARGS+=(--fast)
mkdir -p "$OUT"
rm -f "$OUT"/vdbnet_*.deb "$OUT"/vdb-update_*.deb
step "cargo deb"
VDBNET_DEB=$(cargo deb -p vdbd "${DEB_ARGS[@]}" | tail -n1)
VDBU_DEB=$(cargo deb -p vdb-update "${DEB_ARGS[@]}" | tail -n1)
for deb in "$VDBNET_DEB" "$VDBU_DEB"; do
  [ -f "$deb" ] || fail "cargo deb did not say where it wrote the package ($deb)"
  echo "$deb: $(du -h "$deb" | cut -f1)"
done
[ "$CHECK" -eq 1 ] || { step "built (not installed: --build-only)"; exit 0; }

# The client package must not pull the servers onto a scanner's host.
deps=$(dpkg-deb -f "$VDBU_DEB" Depends)
echo "vdb-update depends on: $deps"
if grep -q vdbnet <<<"$deps"; then fail "vdb-update depends on vdbnet"; fi
if dpkg-deb -c "$VDBU_DEB" | grep -E 'usr/bin/vdb(d)?$'; then fail "vdb-update ships a server or vdb (above)"; fi

for pkg in vdbnet vdb-update; do
  if dpkg -s "$pkg" >/dev/null 2>&1; then
    fail "$pkg is installed on this machine already: this script installs and purges it"
  fi
done
# The users the packages make when missing (vdbnet; clamav without ClamAV installed).
made_users=""
for u in vdbnet clamav; do
  getent passwd "$u" >/dev/null || made_users="$made_users $u"
done
cleanup() {
  # Purge what this script installed, and the users it made: the machine as before.
  $SUDO dpkg -P vdbnet vdb-update >/dev/null 2>&1 || true
  for u in $made_users; do
    if getent passwd "$u" >/dev/null; then $SUDO deluser --system "$u" >/dev/null 2>&1 || true; fi
    if getent group "$u" >/dev/null; then $SUDO delgroup --system "$u" >/dev/null 2>&1 || true; fi
  done
}
trap cleanup EXIT

step "dpkg -i"
$SUDO dpkg -i "$VDBNET_DEB" "$VDBU_DEB"

step "--version"
vdbd --version | grep -Ex 'vdbd [0-9]+\.[0-9]+\.[0-9]+.*' || fail "vdbd --version"
vdb --version | grep -Ex 'vdb [0-9]+\.[0-9]+\.[0-9]+.*' || fail "vdb --version"
vdb-update --version | grep -Ex 'vdb-update [0-9]+\.[0-9]+\.[0-9]+.*' || fail "vdb-update --version"
[ "$(command -v vdbd)" = /usr/bin/vdbd ] || fail "vdbd is not the packaged /usr/bin/vdbd"

step "the user, /etc/vdbnet and its conffiles"
getent passwd vdbnet >/dev/null || fail "no user vdbnet"
ROLES="master mirror directory monitor intake"
conffiles=$(dpkg-query -W -f='${Conffiles}\n' vdbnet vdb-update)
for f in $ROLES; do
  grep -q "/etc/vdbnet/$f.toml " <<<"$conffiles" || fail "/etc/vdbnet/$f.toml is not a conffile"
  [ "$(stat -c '%U:%G %a' "/etc/vdbnet/$f.toml")" = "root:vdbnet 640" ] \
    || fail "/etc/vdbnet/$f.toml is $(stat -c '%U:%G %a' "/etc/vdbnet/$f.toml"), not root:vdbnet 640"
done
grep -q "/etc/vdbnet/vdb-update.toml " <<<"$conffiles" || fail "vdb-update.toml is not a conffile"
# Each shipped config passes the check the unit runs before it starts, read as the unit's user;
# vdb-update's is readable by its service's user.
for r in $ROLES; do
  $SUDO runuser -u vdbnet -- vdbd "$r" --config "/etc/vdbnet/$r.toml" --check \
    || fail "vdbd $r --check refused the installed /etc/vdbnet/$r.toml"
done
$SUDO runuser -u clamav -- cat /etc/vdbnet/vdb-update.toml >/dev/null \
  || fail "vdb-update.service's user clamav cannot read /etc/vdbnet/vdb-update.toml"
if $SUDO runuser -u nobody -- cat /etc/vdbnet/master.toml >/dev/null 2>&1; then
  fail "/etc/vdbnet/master.toml (tokens) is readable by anyone"
fi

step "systemd-analyze verify"
UNITS=""
for r in $ROLES; do UNITS="$UNITS vdbd@$r.service"; done
UNITS="$UNITS vdb-update.service vdb-update.timer"
for u in $UNITS; do
  # Every unit (template instances with their drop-ins); any warning about it is a failure.
  log=$(systemd-analyze verify --man=no "$u" 2>&1) || fail "systemd-analyze verify $u: $log"
  if grep -E "vdbd|vdb-update" <<<"$log"; then fail "systemd-analyze verify $u warned (above)"; fi
  echo "$u: ok"
done
# What each instance ends up with, template and drop-ins merged (offline: no running systemd
# needed): CAP_NET_BIND_SERVICE for the roles that bind 53/80/443 and for no other unit.
for u in $UNITS; do
  [ "${u##*.}" = service ] || continue
  sec=$(systemd-analyze security --offline=yes --no-pager "$u" 2>&1) \
    || fail "systemd-analyze security $u: $sec"
  bind=$(grep -E 'CapabilityBoundingSet=~CAP_NET_\(BIND_SERVICE' <<<"$sec" || true)
  case "$u" in
    vdbd@master.*|vdbd@mirror.*|vdbd@directory.*) want="✗" ;;
    *) want="✓" ;;
  esac
  [ "${bind:0:1}" = "$want" ] || fail "$u: CAP_NET_BIND_SERVICE is not as intended: $bind"
  echo "$u: $(grep -o 'Overall exposure level.*' <<<"$sec"), port < 1024: $([ "$want" = "✗" ] && echo yes || echo no)"
done

step "upgrade over an edited conffile"
EDIT="# edited by scripts/packages.sh $$"
echo "$EDIT" | $SUDO tee -a /etc/vdbnet/mirror.toml >/dev/null
version=$(dpkg-deb -f "$VDBNET_DEB" Version)
# The next version: this package repacked with a higher version whose mirror.toml (edited here)
# and master.toml (not edited) both changed.
repack=$(mktemp -d)
dpkg-deb -R "$VDBNET_DEB" "$repack/pkg"
sed -i "s/^Version: .*/Version: ${version}+upgrade/" "$repack/pkg/DEBIAN/control"
for f in master mirror; do echo "# changed by the upgrade" >>"$repack/pkg/etc/vdbnet/$f.toml"; done
UPGRADE_DEB="$repack/vdbnet_upgrade.deb"
dpkg-deb --root-owner-group -Zgzip -z1 -b "$repack/pkg" "$UPGRADE_DEB" >/dev/null
[ "$(dpkg-deb -f "$UPGRADE_DEB" Version)" != "$version" ] || fail "the upgrade has the same version"
# --force-confold: what an unattended upgrade answers for a changed conffile the admin edited.
$SUDO dpkg -i --force-confold "$UPGRADE_DEB"
[ "$(dpkg-query -W -f='${Version}' vdbnet)" = "${version}+upgrade" ] || fail "the upgrade did not install"
grep -qxF "$EDIT" /etc/vdbnet/mirror.toml || fail "the upgrade overwrote the edited /etc/vdbnet/mirror.toml"
[ -f /etc/vdbnet/mirror.toml.dpkg-dist ] || fail "the upgrade's mirror.toml is not beside it (.dpkg-dist)"
cmp -s "$repack/pkg/etc/vdbnet/master.toml" /etc/vdbnet/master.toml \
  || fail "the unedited /etc/vdbnet/master.toml was not upgraded"
for f in master mirror; do
  [ "$(stat -c '%U:%G %a' "/etc/vdbnet/$f.toml")" = "root:vdbnet 640" ] \
    || fail "the upgrade changed /etc/vdbnet/$f.toml's owner or mode"
done
$SUDO rm -f /etc/vdbnet/mirror.toml.dpkg-dist
rm -rf "$repack"

step "dpkg -r keeps the edited conffile, dpkg -P removes everything"
$SUDO dpkg -r vdbnet vdb-update
[ ! -e /usr/bin/vdbd ] && [ ! -e /usr/bin/vdb-update ] || fail "dpkg -r left the binaries"
grep -qxF "$EDIT" /etc/vdbnet/mirror.toml || fail "dpkg -r removed the edited conffile"
$SUDO dpkg -P vdbnet vdb-update
[ ! -e /etc/vdbnet ] || fail "dpkg -P left /etc/vdbnet: $(ls -A /etc/vdbnet)"
if dpkg-statoverride --list | grep /etc/vdbnet; then fail "dpkg -P left statoverrides (above)"; fi
trap - EXIT
cleanup
for u in $made_users; do
  if getent passwd "$u" >/dev/null; then fail "the user $u is left"; fi
done
step "ok: $VDBNET_DEB $VDBU_DEB"
