#!/usr/bin/env bash
# Runs coldsend's whole test suite against real Redis, Postfix and Dovecot, installing
# them first when missing. Needs root (the mail harness runs Postfix and Dovecot).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
# The end-to-end tests start the real binaries.
cargo build --locked --workspace --bins
cargo test --locked --workspace "$@"
