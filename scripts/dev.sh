#!/usr/bin/env bash
# Runs the platform on this machine: bootstrap, build, start every service
# with working defaults, one log stream prefixed by service. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh

# .env overrides the defaults (see .env.example).
if [ -f .env ]; then set -a; . ./.env; set +a; fi
# One .env feeds every service: a port or database there would be everyone's.
for variable in PORT DATABASE_URL; do
  if [ -n "${!variable:-}" ]; then
    echo "dev.sh: $variable is set (in .env or the shell); each service has its own (see .env.example): unset it" >&2
    exit 2
  fi
done
# Plain http on localhost: the refresh cookie cannot be Secure here.
export COOKIE_SECURE=${COOKIE_SECURE:-false}
export RUST_LOG=${RUST_LOG:-info}

services=(auth accounts chat worker)

echo "building ${services[*]}..."
packages=()
for service in "${services[@]}"; do packages+=(-p "$service"); done
cargo build --quiet "${packages[@]}"

# Every database migrated and every queue declared before any service
# runs, so nothing one publishes finds its consumer's queue missing.
for service in "${services[@]}"; do
  "target/debug/$service" migrate > >(sed -u "s/^/[$service] /") 2>&1
done

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

for service in "${services[@]}"; do
  "target/debug/$service" > >(sed -u "s/^/[$service] /") 2>&1 &
  pids+=($!)
done

echo "auth:      http://localhost:8001/api/auth/docs"
echo "accounts:  http://localhost:8002/api/accounts/docs"
echo "chat:      http://localhost:8003/api/chat/docs (WebSocket ws://localhost:8003/api/chat/ws)"
echo "worker:    emails land in var/mail/*.eml (EMAIL_TRANSPORT=smtp to send)"
wait
