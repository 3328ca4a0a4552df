#!/usr/bin/env bash
# Brings up coldsend locally: Redis (Debian's package, if absent), the HTTP API and one
# worker. State (keys, logs) lives in .coldsend/. Ctrl-C stops everything it started.
#
#   scripts/run-local.sh               API on 127.0.0.1:8080, Redis on 127.0.0.1:6379
#   scripts/run-local.sh --demo-mail   also a throw-away Postfix + Dovecot on loopback
#                                      with a user to register (needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_MAIL=""
[[ "${1:-}" == "--demo-mail" ]] && DEMO_MAIL=1
STATE="$PWD/.coldsend"
mkdir -p "$STATE"
scripts/install-deps.sh "$([[ -n "$DEMO_MAIL" ]] && echo test || echo run)"

cargo build --locked --bins -p coldsend-producer -p coldsend-worker
BIN="$PWD/target/debug"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n "$DEMO_MAIL" && -d "$STATE/mail" ]] && tests/harness/stop.sh "$STATE/mail" || true
}
trap cleanup EXIT INT TERM

export COLDSEND_REDIS__URL="${COLDSEND_REDIS__URL:-redis://127.0.0.1:6379}"
redis_port="${COLDSEND_REDIS__URL##*:}"; redis_port="${redis_port%%/*}"
if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  mkdir -p "$STATE/redis"
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$STATE/redis" --appendonly yes \
    --daemonize no >"$STATE/redis.log" 2>&1 &
  pids+=($!)
  until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done
  echo "started redis-server on 127.0.0.1:$redis_port (data in $STATE/redis)"
fi

# Keys: made once, kept in .coldsend/ (mode 600).
(
  umask 077
  [[ -s "$STATE/encryption.key" ]] || "$BIN/coldsend" keys new-encryption-key >"$STATE/encryption.key"
  [[ -s "$STATE/api-key" ]] || "$BIN/coldsend" keys new | awk '/^api key:/ {print $3}' >"$STATE/api-key"
)
API_KEY="$(cat "$STATE/api-key")"
export COLDSEND_SECRETS__ENCRYPTION_KEY_FILE="$STATE/encryption.key"
export COLDSEND_API__KEY_HASHES="[\"$("$BIN/coldsend" keys hash "$API_KEY")\"]"
export COLDSEND_API__LISTEN="${COLDSEND_API__LISTEN:-127.0.0.1:8080}"
export COLDSEND_LOG__FORMAT="${COLDSEND_LOG__FORMAT:-text}"

if [[ -n "$DEMO_MAIL" ]]; then
  rm -rf "$STATE/mail"
  MH_USERS="demo:demopw" tests/harness/start.sh "$STATE/mail" >/dev/null
  # shellcheck disable=SC1091
  source "$STATE/mail/env"
  export COLDSEND_VALIDATION__EXTRA_CA_FILES="[\"$MH_CA_CERT\"]"
fi

"$BIN/coldsend-worker" >>"$STATE/worker.log" 2>&1 &
pids+=($!)
"$BIN/coldsend" serve >>"$STATE/api.log" 2>&1 &
pids+=($!)
until (exec 3<>"/dev/tcp/${COLDSEND_API__LISTEN%:*}/${COLDSEND_API__LISTEN##*:}") 2>/dev/null; do sleep 0.1; done

BASE="http://$COLDSEND_API__LISTEN"
if [[ -n "$DEMO_MAIL" ]]; then
  EMAIL=demo@example.test HOST=localhost PASSWORD=demopw SMTP_PORT=$MH_SUBMISSION_PORT IMAP_PORT=$MH_IMAPS_PORT
else
  EMAIL=john@mydomain.com HOST=mail.mydomain.com PASSWORD=your-password SMTP_PORT=587 IMAP_PORT=993
fi
cat <<MSG

coldsend is running: API $BASE, one worker. Logs: $STATE/api.log, $STATE/worker.log
API key: $API_KEY

Register a sender account:
  curl -s -X POST $BASE/api/public/v1/sender-accounts \\
    -H "X-API-Key: $API_KEY" -H "Content-Type: application/json" -d '{
      "email_address": "$EMAIL",
      "display_name": "Outreach Team",
      "inbox_type": "CUSTOM_SMTP",
      "daily_limit": 100,
      "smtp_host": "$HOST",
      "smtp_port": $SMTP_PORT,
      "smtp_username": "$EMAIL",
      "smtp_password": "$PASSWORD",
      "smtp_use_tls": true,
      "imap_host": "$HOST",
      "imap_port": $IMAP_PORT,
      "imap_username": "$EMAIL",
      "imap_password": "$PASSWORD",
      "imap_use_ssl": true
    }'
Then watch it validate (PENDING_VALIDATION -> ACTIVE or VALIDATION_FAILED):
  curl -s -H "X-API-Key: $API_KEY" $BASE/api/public/v1/sender-accounts
The CLI works too (same settings): COLDSEND_SECRETS__ENCRYPTION_KEY_FILE=$STATE/encryption.key target/debug/coldsend accounts list

Ctrl-C stops everything started here.
MSG
wait -n "${pids[@]}"
