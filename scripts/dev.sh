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
# The scheduler, the worker and the host agents it launches share this
# secret; a development one unless .env gives another.
export REGISTRATION_SECRET=${REGISTRATION_SECRET:-dev-registration-secret-not-for-production}
# One local region the scheduler keeps with 2 free slots: the worker
# launches its host agents (ports 9100-9199).
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

echo "auth:      http://localhost:8001/api/auth/docs"
echo "accounts:  http://localhost:8002/api/accounts/docs"
echo "chat:      http://localhost:8003/api/chat/docs (WebSocket ws://localhost:8003/api/chat/ws)"
echo "scheduling: http://localhost:8004/api/scheduling/docs (host agents on 9100-9199, launched by the worker)"
echo "worker:    emails land in var/mail/*.eml (EMAIL_TRANSPORT=smtp to send)"
wait
