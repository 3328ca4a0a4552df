#!/usr/bin/env bash
# Runs a benchmark against real servers on loopback (release build). Figures go to
# docs/BENCHMARKS.md by hand, with this command.
#   scripts/bench.sh send    queue → worker → SMTP vs smtp-source into the same smtp-sink
#   scripts/bench.sh poll    IMAP scan pass vs an imaplib reference at 1k/10k/100k messages
#   scripts/bench.sh scale   one worker scanning 1,000 mailboxes at a 60 s interval: lag, CPU, memory
#   scripts/bench.sh deliverability [CORPUS...]
#                            `coldsend classify` vs Sisimai (Debian's libsisimai-perl) over bounce corpora:
#                            detection, hard/soft and reason agreement, every disagreement
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
cargo build --locked --release --workspace --bins
if [[ "${1:-}" == "deliverability" ]]; then
  shift
  dpkg-query -W -f='${Status}' libsisimai-perl 2>/dev/null | grep -q "install ok installed" || {
    ${SUDO:-$( [[ $(id -u) -ne 0 ]] && echo sudo )} apt-get install -y -qq libsisimai-perl >/dev/null
  }
  export COLDSEND_BIN=target/release/coldsend
  shared=../shared/corpora/flufl-bounce
  if (($# == 0)) && [[ -d $shared ]]; then
    scripts/deliverability.py "$shared/messages" --labels "$shared/sisimai-4.25-labels.jsonl"
    echo
    scripts/deliverability.py "$shared/messages"
    echo
  fi
  for corpus in "${@:-crates/core/tests/corpus}"; do scripts/deliverability.py "$corpus"; echo; done
  exit 0
fi
case "${1:-send}" in
  send) COLDSEND_PROFILE=release cargo bench --locked -p coldsend-tests --bench send_path ;;
  poll) COLDSEND_PROFILE=release cargo bench --locked -p coldsend-tests --bench imap_poll ;;
  scale)
    # Dovecot watches each IDLE-ing mailbox with an inotify instance; past the kernel's
    # per-user limit (128 by default, all mailboxes run as one user here) it falls back to
    # checking every 30 s, which would be measured as coldsend's delay.
    if (( $(sysctl -n fs.inotify.max_user_instances) < 8192 )); then
      ${SUDO:-$( [[ $(id -u) -ne 0 ]] && echo sudo )} sysctl -qw fs.inotify.max_user_instances=8192 ||
        echo "warning: fs.inotify.max_user_instances stays low; IDLE figures will show Dovecot's 30 s fallback" >&2
    fi
    COLDSEND_PROFILE=release cargo bench --locked -p coldsend-tests --bench imap_scale ;;
  *) echo "usage: scripts/bench.sh send|poll|scale|deliverability" >&2; exit 2 ;;
esac
