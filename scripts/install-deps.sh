#!/usr/bin/env bash
# Installs what coldsend's scripts need on Debian/Ubuntu, skipping what is present.
# Usage: scripts/install-deps.sh [run|test]
#   run:  redis-server
#   test: redis-server, postfix, dovecot (imapd, lmtpd), openssl, bc, iproute2, systemd (systemd-analyze),
#         python3 + requests, redis, kubernetes-validate, schemathesis (the API fuzz test),
#         Node.js + npm and the test OAuth 2.0 authorization server's packages (tests/harness/oauth-as),
#         chromium + chromium-driver (the dashboard's browser tests, driven over WebDriver)
set -euo pipefail
what="${1:-test}"

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi

missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
want() { for p in "$@"; do have_pkg "$p" || missing+=("$p"); done; }

want redis-server
if [[ "$what" == "test" ]]; then
  want postfix dovecot-core dovecot-imapd dovecot-lmtpd openssl bc iproute2 python3 python3-pip systemd
  want chromium chromium-driver fonts-dejavu-core
  # Node.js runs the test authorization server; an installed node (any source) is kept.
  command -v node >/dev/null || want nodejs
  command -v npm >/dev/null || want npm
fi

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  # Postfix asks how to configure itself; "No configuration" leaves /etc untouched.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python clients used by the tests: requests (HTTP API), redis (the Redis-level contract).
# kubernetes_validate: the manifests' schema check. schemathesis: the API's property-based test.
# yaml (PyYAML): the compose file's check.
for mod in requests:requests redis:redis yaml:pyyaml kubernetes_validate:kubernetes-validate schemathesis:schemathesis; do
  if [[ "$what" == "test" ]] && ! python3 -c "import ${mod%%:*}" 2>/dev/null; then
    echo "install-deps: installing the Python package ${mod##*:}"
    python3 -m pip install --quiet --root-user-action=ignore "${mod##*:}" 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages "${mod##*:}"
  fi
done

# The loopback OAuth 2.0 authorization server the OAuth2 tests sign in against (pinned by its lockfile).
harness_as="$(dirname "$0")/../tests/harness/oauth-as"
if [[ "$what" == "test" && ! -f "$harness_as/node_modules/oidc-provider/package.json" ]]; then
  echo "install-deps: installing the test authorization server's npm packages"
  npm ci --prefix "$harness_as" --no-audit --no-fund --loglevel=error
fi

command -v cargo >/dev/null || {
  echo "install-deps: cargo not found; install Rust (rustup) 1.88 or newer" >&2
  exit 1
}
