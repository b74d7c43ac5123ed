#!/usr/bin/env bash
# Performance figures of the platform on this machine, all from one run so
# they can be compared side by side. Release builds; load from a second
# process over loopback; PostgreSQL and RabbitMQ as bootstrap leaves them.
# Method and results: BENCHMARKS.md. Output: target/bench/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
PORT=${BENCH_AUTH_PORT:-18001}
out=target/bench
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"

scripts/bootstrap.sh
echo "building release binaries..."
cargo build --release --quiet -p auth -p accounts -p worker -p loadgen
loadgen=target/release/loadgen

record() { tee -a "$results"; }

# The baseline of the read figures: pgbench's select-only run at the same
# concurrency, with its own latency percentiles (from its per-transaction
# log) as the floor of what the service can show.
pgbench_select_only() { # label
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS bench_pgbench" >/dev/null 2>&1
  psql -q "$PG/postgres" -c "CREATE DATABASE bench_pgbench" >/dev/null
  pgbench -q -i -s 10 "$PG/bench_pgbench?sslmode=disable" >/dev/null 2>&1
  rm -f "$out"/pgbench_log.*
  local tps
  tps=$(cd "$out" && pgbench -S -c 64 -j 2 -T "$SECONDS_PER_RUN" --log --log-prefix=pgbench_log \
    "$PG/bench_pgbench?sslmode=disable" 2>/dev/null | awk '/^tps/ {print $3; exit}')
  cat "$out"/pgbench_log.* | awk '{print $3}' | sort -n | awk -v label="$1" -v tps="$tps" \
    '{a[NR]=$1} END {printf "{\"bench\":\"%s\",\"tps\":%s,\"p50_ms\":%.2f,\"p99_ms\":%.2f}\n",
      label, tps, a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000}' | record
  rm -f "$out"/pgbench_log.*
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS bench_pgbench" >/dev/null
}

psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS auth_bench WITH (FORCE)" >/dev/null
export DATABASE_URL="$PG/auth_bench?sslmode=disable"
export AMQP_PREFIX="bench.$$."
export PORT HOST=127.0.0.1 RUST_LOG=warn COOKIE_SECURE=false
export LOGIN_IP_MAX_FAILURES=100000
target/release/auth > "$out/auth.log" 2>&1 &
auth_pid=$!
trap 'kill $auth_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/api/auth/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

echo "== idle RSS of the release auth binary"
sleep 5
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$auth_pid/status")
echo "{\"bench\":\"auth_idle_rss\",\"rss_mb\":$(awk "BEGIN {printf \"%.1f\", $rss_kb/1024}")}" | record

base="http://127.0.0.1:$PORT/api/auth"
echo "== raw argon2id verify rate, same parameters, $(nproc) threads"
$loadgen argon2 --threads "$(nproc)" --seconds "$SECONDS_PER_RUN" | record
echo "== POST /login"
$loadgen login --base "$base" --users "$CONNECTIONS" --connections "$CONNECTIONS" --seconds "$SECONDS_PER_RUN" | record

echo "== pgbench -S -c 64 -j 2"
pgbench_select_only pgbench_select_only
echo "== GET /sessions (authenticated)"
$loadgen sessions --base "$base" --users "$CONNECTIONS" --connections "$CONNECTIONS" --seconds "$SECONDS_PER_RUN" | record
echo "== POST /refresh (a write: rotation in one transaction)"
$loadgen refresh --base "$base" --users "$CONNECTIONS" --connections "$CONNECTIONS" --seconds "$SECONDS_PER_RUN" | record

# --- accounts -----------------------------------------------------------------
ACCOUNTS_PORT=${BENCH_ACCOUNTS_PORT:-18002}
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS accounts_bench WITH (FORCE)" >/dev/null
DATABASE_URL="$PG/accounts_bench?sslmode=disable" PORT=$ACCOUNTS_PORT \
  AUTH_JWKS_URL="$base/.well-known/jwks.json" target/release/accounts > "$out/accounts.log" 2>&1 &
accounts_pid=$!
trap 'kill $auth_pid $accounts_pid 2>/dev/null || true' EXIT
accounts="http://127.0.0.1:$ACCOUNTS_PORT/api/accounts"
for _ in $(seq 1 100); do curl -fs "$accounts/readyz" >/dev/null 2>&1 && break; sleep 0.2; done

echo "== pgbench -S -c 64 -j 2 (again, beside the accounts figure)"
pgbench_select_only pgbench_select_only_2
echo "== GET /api/accounts/me"
$loadgen me --base "$accounts" --auth "$base" --users "$CONNECTIONS" --connections "$CONNECTIONS" --seconds "$SECONDS_PER_RUN" | record

echo "== directory search at 100,000 users"
psql -q "$PG/accounts_bench" -c "INSERT INTO profiles (id, email, display_name, roles) \
  SELECT gen_random_uuid(), 'person' || n || '@example.com', 'Person ' || n, ARRAY['user'] \
  FROM generate_series(1, 100000) AS n; ANALYZE profiles;" >/dev/null
echo 'bench admin password' | target/release/auth create-admin --email admin-$$@example.com >/dev/null
admin_token=$(curl -fs -X POST "$base/login" -H 'content-type: application/json' \
  -d "{\"email\":\"admin-$$@example.com\",\"password\":\"bench admin password\"}" | jq -r .access_token)
for _ in $(seq 1 100); do
  curl -fs "$accounts/users?limit=1" -H "authorization: Bearer $admin_token" >/dev/null 2>&1 && break; sleep 0.1
done
$loadgen search --base "$accounts" --token "$admin_token" --rows 100000 --connections 8 --seconds "$SECONDS_PER_RUN" | record

kill $auth_pid $accounts_pid 2>/dev/null || true
wait $auth_pid $accounts_pid 2>/dev/null || true
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS auth_bench WITH (FORCE)" >/dev/null
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS accounts_bench WITH (FORCE)" >/dev/null

# --- outbox to consumer --------------------------------------------------------
echo "== 10,000 events: outbox -> relay -> RabbitMQ -> consumer"
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS bench_outbox WITH (FORCE)" >/dev/null
for mode in burst prefill "paced --rate 1000" "paced --rate 2500"; do
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS bench_outbox WITH (FORCE)" >/dev/null
  $loadgen outbox --db "$PG/bench_outbox?sslmode=disable" --events 10000 --writers 8 --mode $mode | record
done
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS bench_outbox WITH (FORCE)" >/dev/null

# --- worker ----------------------------------------------------------------------
echo "== worker: idle RSS, then 10,000 emails into a local SMTP sink"
WORKER_PREFIX="bench-worker.$$."
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS worker_bench WITH (FORCE)" >/dev/null
DATABASE_URL="$PG/worker_bench?sslmode=disable" PORT=${BENCH_WORKER_PORT:-18005} AMQP_PREFIX=$WORKER_PREFIX \
  EMAIL_TRANSPORT=smtp SMTP_URL=smtp://127.0.0.1:2525 target/release/worker > "$out/worker.log" 2>&1 &
worker_pid=$!
trap 'kill $worker_pid 2>/dev/null || true' EXIT
sleep 5
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$worker_pid/status")
echo "{\"bench\":\"worker_idle_rss\",\"rss_mb\":$(awk "BEGIN {printf \"%.1f\", $rss_kb/1024}")}" | record
peak_file="$out/worker_peak_kb"
echo 0 > "$peak_file"
( while kill -0 $worker_pid 2>/dev/null; do
    kb=$(awk '/VmRSS/ {print $2}' "/proc/$worker_pid/status" 2>/dev/null || echo 0)
    [ "${kb:-0}" -gt "$(cat "$peak_file")" ] && echo "$kb" > "$peak_file"
    sleep 0.1
  done ) &
sampler=$!
$loadgen smtp --port 2525 --emails 10000 --prefix "$WORKER_PREFIX" | record
kill $sampler 2>/dev/null || true
echo "{\"bench\":\"worker_burst_rss\",\"rss_mb\":$(awk "BEGIN {printf \"%.1f\", $(cat "$peak_file")/1024}")}" | record
kill $worker_pid 2>/dev/null || true
wait $worker_pid 2>/dev/null || true
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS worker_bench WITH (FORCE)" >/dev/null
# What the services declared under this run's prefixes: queues by listing,
# the exchanges by name.
for prefix in "bench.$$." "$WORKER_PREFIX"; do
  queues=$(rabbitmqctl -q list_queues name 2>/dev/null | awk -v p="$prefix" 'index($0, p) == 1' | paste -sd, - || true)
  $loadgen forget --prefix "$prefix" --queues "$queues" || true
done

python3 - "$results" <<'PY'
import json, sys
rows = {r["bench"]: r for r in map(json.loads, open(sys.argv[1]))}
raw, login = rows["argon2id_verify"]["rps"], rows["login"]["rps"]
pg, sess = rows["pgbench_select_only"]["tps"], rows["sessions"]
print()
print(f"login {login:.1f}/s vs raw argon2id {raw:.1f}/s: {100*login/raw:.0f}% (target >= 90%)")
print(f"GET /sessions {sess['rps']:.0f}/s vs pgbench -S {pg:.0f} tps: {100*sess['rps']/pg:.0f}% (target >= 50%), p99 {sess['p99_ms']} ms (target <= 10; pgbench's own p99 {rows['pgbench_select_only']['p99_ms']} ms)")
r = rows["refresh"]
print(f"refresh {r['rps']:.0f}/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
print(f"idle RSS {rows['auth_idle_rss']['rss_mb']} MB (target <= 30)")
pg2, me = rows["pgbench_select_only_2"]["tps"], rows["me"]
print(f"GET /api/accounts/me {me['rps']:.0f}/s vs pgbench -S {pg2:.0f} tps: {100*me['rps']/pg2:.0f}% (target >= 50%), p99 {me['p99_ms']} ms (target <= 10; pgbench's own p99 {rows['pgbench_select_only_2']['p99_ms']} ms)")
s = rows["search"]
print(f"directory search at 100k: {s['rps']:.0f}/s at 8 connections, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms (target <= 20)")
o, d = rows["outbox_to_consumer_burst"], rows["outbox_to_consumer_prefill"]
print(f"outbox -> consumer: burst with writers {o['rps']:.0f}/s, drain of a prefilled outbox {d['rps']:.0f}/s (target >= 5000)")
for rate in (1000, 2500):
    p = rows[f"outbox_to_consumer_paced_{rate}"]
    print(f"outbox -> consumer paced at {rate}/s: p99 commit-to-handled {p['p99_ms']} ms (target <= 100)")
raw, w = rows["smtp_plain_client"], rows["worker_email"]
print(f"worker: {w['rps']:.0f} emails/s vs plain SMTP client {raw['rps']:.0f}/s: {100*w['rps']/raw['rps']:.0f}% (target >= 50%), p99 queue-to-delivered {w['p99_ms']} ms, errors {w['errors']}")
print(f"worker RSS: idle {rows['worker_idle_rss']['rss_mb']} MB (target <= 30), peak during the burst {rows['worker_burst_rss']['rss_mb']} MB")
PY
