#!/usr/bin/env bash
# Fails when a service's src/schema.rs differs from what diesel prints for
# its migrations.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
server=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}
if ! command -v diesel >/dev/null 2>&1; then
  echo "diesel CLI not found: scripts/bootstrap.sh installs it" >&2
  exit 1
fi
status=0
for migrations in services/*/migrations; do
  service=$(basename "$(dirname "$migrations")")
  db="schema_check_${service//-/_}_$$"
  psql -q "$server/postgres" -c "CREATE DATABASE $db" >/dev/null
  trap 'psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null' EXIT
  for up in "$migrations"/*/up.sql; do
    psql -q -v ON_ERROR_STOP=1 "$server/$db" -f "$up" >/dev/null
  done
  if ! diesel print-schema --database-url "$server/$db" | rustfmt --edition 2021 | diff -u "services/$service/src/schema.rs" -; then
    echo "schema drift in services/$service/src/schema.rs (regenerate with diesel print-schema)"
    status=1
  fi
  psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null
  trap - EXIT
done
[ $status = 0 ] && echo "schema.rs matches the migrations"
exit $status
