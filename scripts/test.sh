#!/usr/bin/env bash
# The README's test command: installs what the tests drive (scripts/test-deps.sh: ClamAV, Knot,
# dig, Chromium, wrk, cvdupdate, …; only what is missing), then runs every test of the
# workspace. A missing tool fails its test; no test is skipped. Extra arguments go to
# `cargo test` (e.g. `scripts/test.sh -p vdbd --test deploy`). `.ci/run` runs it too.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/test-deps.sh
if [ "$#" -eq 0 ]; then
  set -- --workspace
fi
echo "== cargo test --locked $*"
exec cargo test --locked "$@"
