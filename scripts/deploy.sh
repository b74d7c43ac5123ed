#!/usr/bin/env bash
# Deploys the platform to the Docker Swarm that `docker` talks to (a manager:
# locally, or DOCKER_HOST=ssh://user@manager, or tcp:// with TLS).
#
#   STACK_NAME=platform TAG=<image tag> DOMAIN=example.com \
#   REGISTRY=registry.example.com/group/platform scripts/deploy.sh
#
#   STACK_NAME, TAG, DOMAIN, REGISTRY   required
#   PUBLIC_SUBNET   the subnet of the traefik-public network when this script
#                   creates it (default 10.201.0.0/16); an existing network's
#                   own subnet is read instead
#   SMTP_URL, ALLOWED_ORIGINS, RUST_LOG, OTEL_EXPORTER_OTLP_ENDPOINT
#                   optional, passed to the stack (docker-compose.yml)
#
# It renders docker-compose.yml (never the development override) into
# docker-stack.yml, makes sure the traefik-public network and the node
# labels that pin the volumes exist, warns about missing secrets, and
# deploys.
set -eu

missing=0
for name in STACK_NAME TAG DOMAIN REGISTRY; do
  if [ -z "${!name:-}" ]; then
    echo "deploy.sh: $name is required" >&2
    missing=1
  fi
done
if [ "$missing" != 0 ]; then
  exit 2
fi
case $STACK_NAME in
  *[!A-Za-z0-9_-]*)
    echo "deploy.sh: STACK_NAME may hold only letters, digits, _ and -" >&2
    exit 2
    ;;
esac
PUBLIC_SUBNET=${PUBLIC_SUBNET:-10.201.0.0/16}

cd "$(dirname "$0")/.."
say() { printf 'deploy.sh: %s\n' "$*" >&2; }

if [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" != true ]; then
  say "docker is not talking to a swarm manager (DOCKER_HOST=${DOCKER_HOST:-local})"
  exit 1
fi
self=$(docker info --format '{{.Swarm.NodeID}}')

# The public network, where Traefik reaches the services.
if docker network inspect traefik-public >/dev/null 2>&1; then
  driver=$(docker network inspect traefik-public --format '{{.Driver}}')
  if [ "$driver" != overlay ]; then
    say "network traefik-public exists but is a $driver network, not overlay"
    exit 1
  fi
  subnets=$(docker network inspect traefik-public \
    --format '{{range $i, $c := .IPAM.Config}}{{if $i}},{{end}}{{$c.Subnet}}{{end}}')
  if [ -n "$subnets" ]; then
    PUBLIC_SUBNET=$subnets
  fi
else
  say "creating the overlay network traefik-public ($PUBLIC_SUBNET)"
  # Not attachable: only the stack's services join it, and auth believes
  # X-Forwarded-For from its whole subnet.
  docker network create --driver overlay \
    --subnet "$PUBLIC_SUBNET" traefik-public >/dev/null
fi

# Swarm configs cannot change: each version of a Traefik file gets a name
# of its own (docker-compose.yml puts the digest in it).
digest() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -c1-12
  else
    shasum -a 256 "$1" | cut -c1-12
  fi
}
TRAEFIK_STATIC_DIGEST=$(digest traefik/traefik.yml)
TRAEFIK_MIDDLEWARES_DIGEST=$(digest traefik/dynamic/middlewares.yml)

export STACK_NAME TAG DOMAIN REGISTRY PUBLIC_SUBNET \
  TRAEFIK_STATIC_DIGEST TRAEFIK_MIDDLEWARES_DIGEST

# docker stack config substitutes the variables and turns each `$$` back
# into `$`; docker stack deploy substitutes again, so every `$` left in the
# rendered file is escaped once more.
docker stack config -c docker-compose.yml > docker-stack.yml
sed 's/\$/$$/g' docker-stack.yml > docker-stack.yml.tmp
mv docker-stack.yml.tmp docker-stack.yml
say "rendered docker-stack.yml (PUBLIC_SUBNET=$PUBLIC_SUBNET)"

# Volumes stay on the node that holds them: every
# node.labels.<STACK_NAME>.<volume> == true constraint needs a node with that
# label. If none has it yet, this manager gets it.
labels=$(sed -n "s/.*node\.labels\.\(${STACK_NAME}\.[A-Za-z0-9_.-]*\) *== *true.*/\1/p" docker-stack.yml | sort -u)
for label in $labels; do
  if [ -z "$(docker node ls -q --filter "node.label=$label=true")" ]; then
    say "no node has the label $label=true: adding it to this manager ($self)"
    docker node update --label-add "$label=true" "$self" >/dev/null
  fi
done

# The external secrets: the stack cannot start without them.
secrets=$(awk '
  /^[^ ]/ { section = $1; key = "" }
  section == "secrets:" && /^  [^ ]/ { key = $1; sub(/:$/, "", key); name[key] = key }
  section == "secrets:" && key != "" && /^    name: / { name[key] = $2 }
  section == "secrets:" && key != "" && /^    external: true/ { external[key] = 1 }
  END { for (k in external) print name[k] }
' docker-stack.yml | sort)
for secret in $secrets; do
  if ! docker secret inspect "$secret" >/dev/null 2>&1; then
    say "warning: the secret $secret does not exist; create it first (README, Deploy to Docker Swarm)"
  fi
done

if [ -z "${SMTP_URL:-}" ]; then
  say "warning: SMTP_URL is not set: the worker sends to smtp://smtp:587, which the stack does not have"
fi

# --detach=false waits until every service has converged (or its update
# has failed and rolled back), so a failed deploy fails this script.
docker stack deploy -c docker-stack.yml --with-registry-auth --prune --detach=false "$STACK_NAME"
