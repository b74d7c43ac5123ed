#!/usr/bin/env bash
# Removes what tests that crashed may have left: databases t_* and AMQP
# queues named t.<id>.*. Tests clean up after themselves (exchanges
# included); this is the net under them.
set -euo pipefail
server=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}
left=$(psql -qtA "$server/postgres" -c "SELECT datname FROM pg_database WHERE datname LIKE 't\_%'" || true)
for db in $left; do
  psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null || true
done
if command -v rabbitmqctl >/dev/null 2>&1; then
  queues=$(rabbitmqctl -q list_queues name 2>/dev/null | grep '^t\.' || true)
  for q in $queues; do rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done
  count=$(echo "$queues" | grep -c . || true)
  echo "swept $(echo "$left" | grep -c . || true) databases and $count queues left by tests"
fi
