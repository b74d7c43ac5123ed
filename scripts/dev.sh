#!/usr/bin/env bash
# Runs the platform on this machine: bootstrap, build, start every service
# with working defaults and the real Traefik in front of them on
# http://localhost:${GATEWAY_PORT:-8000} (its dashboard on
# ${GATEWAY_API_PORT:-8080}), one log stream prefixed by service. Ctrl-C
# stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh

# .env overrides the defaults (see .env.example).
# shellcheck source=/dev/null
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
# The scheduler, the worker and the host agents it launches share this
# secret; a development one unless .env gives another.
export REGISTRATION_SECRET=${REGISTRATION_SECRET:-dev-registration-secret-not-for-production}
# One local region the scheduler keeps with 2 free slots: the worker
# launches its host agents (ports 9100-9199).
# The gateway connects from 127.0.0.1: auth takes the client's address
# from its X-Forwarded-For, and from nobody else's.
export TRUSTED_PROXIES=${TRUSTED_PROXIES:-127.0.0.1}
export GATEWAY_PORT=${GATEWAY_PORT:-8000}
# Links in emails lead through the gateway.
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://localhost:$GATEWAY_PORT}
export SCALING_REGIONS=${SCALING_REGIONS:-'{"local":{"buffer":2,"min_instances":1,"max_instances":4,"capacity":4}}'}

services=(auth accounts chat instance-scheduling worker)

echo "building ${services[*]}..."
packages=(-p host-agent)
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
  # The worker's host agents are instances and outlive it on purpose; in
  # development they go with the rest.
  pkill -TERM -x host-agent 2>/dev/null || true
}
trap stop INT TERM EXIT

for service in "${services[@]}"; do
  "target/debug/$service" > >(sed -u "s/^/[$service] /") 2>&1 &
  pids+=($!)
done
scripts/gateway.sh > >(sed -u "s/^/[gateway] /") 2>&1 &
pids+=($!)

gateway="http://localhost:$GATEWAY_PORT"
echo "gateway:    $gateway (Traefik; dashboard http://127.0.0.1:${GATEWAY_API_PORT:-8080}/dashboard/)"
echo "auth:       $gateway/api/auth/docs"
echo "accounts:   $gateway/api/accounts/docs"
echo "chat:       $gateway/api/chat/docs (WebSocket ws://localhost:$GATEWAY_PORT/api/chat/ws)"
echo "scheduling: $gateway/api/scheduling/docs (host agents on 9100-9199, launched by the worker)"
echo "services:   directly on 8001-8005 too (/metrics there; the gateway does not route it)"
echo "worker:     emails land in var/mail/*.eml (EMAIL_TRANSPORT=smtp to send)"
wait
