#!/usr/bin/env bash
# Installs what the tests drive for real on a fresh Debian machine (idempotent: only what is
# missing), stops the daemons those packages start, and checks the ClamAV 1.5.3 build the
# `clamav15` suite runs. `scripts/test.sh` (the README's test command) and `.ci/run` call it.
# Runs as root on CI; uses sudo when not root.
#
#   scripts/test-deps.sh        what `cargo test --workspace` needs
#   scripts/test-deps.sh --ci   also the cargo tools of .ci/run's other checks (cargo-machete,
#                               cargo-fuzz, cargo-deb for scripts/packages.sh)
#   scripts/test-deps.sh --list the Debian packages the tests need, one line (.ci/run installs
#                               them with apt-get before anything else)
#
# `vdbd dev` needs none of this: only a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

CI_TOOLS=0
LIST=0
case "${1:-}" in
  "") ;;
  --ci) CI_TOOLS=1 ;;
  --list) LIST=1 ;;
  *) echo "usage: $0 [--ci|--list]" >&2; exit 2 ;;
esac

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

# What the tests drive for real:
#   clamav, clamav-freshclam, clamav-daemon: sigtool/clamscan judge our files, freshclam and clamd
#     are clients of our mirrors and updater; dnsutils (dig) and knot: the directory's DNS and a
#     real secondary; chromium: the monitor's status page; chromium-driver: WebDriver for the
#     intake's upload form (a file upload needs automation); wrk: load during a rollout; time:
#     bench/; python3-pip: cvdupdate below; prometheus: promtool checks the shipped alerting
#     rules. The daemons these packages ship are stopped: tests start their own, on loopback,
#     in temp dirs.
PKGS="libssl-dev pkg-config clamav clamav-freshclam clamav-daemon dnsutils knot knot-dnsutils chromium chromium-driver wrk time python3-pip prometheus"
if [ "$LIST" -eq 1 ]; then
  echo "$PKGS"
  exit 0
fi
missing=""
# Installed means "install ok installed": a removed package whose configuration files are left
# (`rc`) is still known to `dpkg -s`, but its programs are gone.
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q ' installed$' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "== installing:$missing"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# cvdupdate (PyPI): ClamAV's private-mirror tool, a client of our mirrors in the e2e suite.
if ! command -v cvd >/dev/null; then
  echo "== installing cvdupdate (pip)"
  # Debian 12's system Python refuses pip installs outside a venv (PEP 668) unless told.
  python3 -m pip install --quiet --disable-pip-version-check cvdupdate 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages cvdupdate
  command -v cvd >/dev/null || pyenv rehash 2>/dev/null || true
fi
cvd --help >/dev/null
for svc in clamav-freshclam clamav-daemon knot prometheus; do
  $SUDO systemctl stop "$svc" >/dev/null 2>&1 || true
  $SUDO pkill -x "${svc#clamav-}" >/dev/null 2>&1 || true
done
sigtool --version
clamscan --version
# ClamAV 1.5.3 (../shared/tools/clamav-1.5.3, the real 1.5 client of vdbd's `clamav15` suite):
# its runtime libraries (libcurl4, libssl3, libjson-c5, libpcre2-8-0, libxml2, …) come from the
# clamav packages above. Say so here, clearly, if it or one of them is missing.
C15=../shared/tools/clamav-1.5.3
if [ ! -x "$C15/bin/freshclam" ]; then
  echo "ClamAV 1.5.3 is missing at $C15 (see its README): the clamav15 suite needs it"; exit 1
fi
if ldd "$C15/bin/freshclam" "$C15/bin/sigtool" | grep "not found"; then
  echo "ClamAV 1.5.3 misses runtime libraries (above): install them with apt-get"; exit 1
fi
"$C15/bin/freshclam" --config-file=/dev/null --version

if [ "$CI_TOOLS" -eq 1 ]; then
  # cargo-machete: no unused dependencies; cargo-fuzz: the fuzz targets build; cargo-deb: the
  # Debian packages (scripts/packages.sh). cargo-deb is pinned: packages.sh packs the test
  # build's dev-profile binaries, which 3.8 accepts with a warning that it may refuse one day.
  # One build directory for the three: the dependencies they share (clap, serde, …) build once
  # (measured: 157 s for the three instead of 208 s in separate directories, the second time with
  # their sources already downloaded).
  tools_target=$(mktemp -d)
  for spec in cargo-machete cargo-fuzz cargo-deb@3.8.0; do
    tool=${spec%@*}
    if ! command -v "$tool" >/dev/null; then
      echo "== installing $spec"
      CARGO_TARGET_DIR="$tools_target" cargo install "$spec" --locked --quiet
    fi
  done
  rm -rf "$tools_target"
fi
