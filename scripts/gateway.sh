#!/usr/bin/env bash
# Runs the real Traefik as the local gateway, with the project's local
# configuration (traefik/local): http://127.0.0.1:${GATEWAY_PORT:-8000} in
# front of the services on this machine. scripts/dev.sh starts it; the tests
# start it with their own ports and upstreams.
#
#   GATEWAY_PORT=8000          where clients connect
#   GATEWAY_API_PORT=8080      ping, API and dashboard
#   GATEWAY_STATE_DIR=var/gateway   where the rendered static file goes
#   GATEWAY_LOG_LEVEL=WARN
#   AUTH_UPSTREAM, ACCOUNTS_UPSTREAM, CHAT_UPSTREAM, SCHEDULING_UPSTREAM
#                              the services (default http://127.0.0.1:8001..8004)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)

GATEWAY_PORT=${GATEWAY_PORT:-8000}
GATEWAY_API_PORT=${GATEWAY_API_PORT:-8080}
GATEWAY_STATE_DIR=${GATEWAY_STATE_DIR:-$root/var/gateway}
GATEWAY_LOG_LEVEL=${GATEWAY_LOG_LEVEL:-WARN}

traefik=$(command -v traefik || true)
if [ -z "$traefik" ]; then
  echo "gateway.sh: traefik is not installed: run scripts/bootstrap.sh" >&2
  exit 1
fi

mkdir -p "$GATEWAY_STATE_DIR"
static="$GATEWAY_STATE_DIR/traefik.yml"
sed -e "s|\${GATEWAY_ADDRESS}|127.0.0.1:$GATEWAY_PORT|" \
    -e "s|\${GATEWAY_API_ADDRESS}|127.0.0.1:$GATEWAY_API_PORT|" \
    -e "s|\${TRAEFIK_DIR}|$root/traefik|" \
    -e "s|\${GATEWAY_LOG_LEVEL}|$GATEWAY_LOG_LEVEL|" \
    "$root/traefik/local/traefik.yml" > "$static"
# shellcheck disable=SC2016 # a literal ${NAME}, the placeholders' form
if grep -q '${[A-Z_]*}' "$static"; then
  echo "gateway.sh: traefik/local/traefik.yml has a placeholder this script does not fill" >&2
  exit 1
fi

exec "$traefik" --configFile="$static"
