#!/usr/bin/env bash
# Runs a benchmark against real servers on loopback (release build). Figures go to
# docs/BENCHMARKS.md by hand, with this command.
#   scripts/bench.sh send    queue → worker → SMTP vs smtp-source into the same smtp-sink
#   scripts/bench.sh poll    IMAP scan pass vs an imaplib reference at 1k/10k/100k messages
#   scripts/bench.sh scale   one worker scanning 1,000 mailboxes at a 60 s interval: lag, CPU, memory
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
cargo build --locked --release --workspace --bins
case "${1:-send}" in
  send) COLDSEND_PROFILE=release cargo bench --locked -p coldsend-tests --bench send_path ;;
  poll) COLDSEND_PROFILE=release cargo bench --locked -p coldsend-tests --bench imap_poll ;;
  scale) COLDSEND_PROFILE=release cargo bench --locked -p coldsend-tests --bench imap_scale ;;
  *) echo "usage: scripts/bench.sh send|poll|scale" >&2; exit 2 ;;
esac
