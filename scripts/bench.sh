#!/usr/bin/env bash
# Runs a benchmark against real servers on loopback (release build). Figures go to
# docs/BENCHMARKS.md by hand, with this command.
#   scripts/bench.sh send    queue → worker → SMTP vs smtp-source into the same smtp-sink
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
cargo build --locked --release --workspace --bins
case "${1:-send}" in
  send) COLDSEND_PROFILE=release cargo bench --locked -p coldsend-tests --bench send_path ;;
  *) echo "usage: scripts/bench.sh send" >&2; exit 2 ;;
esac
