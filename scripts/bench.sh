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
cargo build --release --quiet -p auth -p accounts -p chat -p instance-scheduling -p worker -p loadgen
loadgen=target/release/loadgen

record() { tee -a "$results"; }
drop_db() { # name: gone, with whoever was still connected
  psql -q "$PG/postgres" -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
}

# The baseline of the read figures: pgbench's select-only run at the same
# concurrency, with its own latency percentiles (from its per-transaction
# log) as the floor of what the service can show.
pgbench_select_only() { # label
  drop_db bench_pgbench
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
  drop_db bench_pgbench
}

drop_db auth_bench
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
drop_db accounts_bench
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
drop_db auth_bench
drop_db accounts_bench

# --- chat ------------------------------------------------------------------------
# loadgen starts its own release chat replicas (child processes) on a
# database and AMQP prefix of their own, and signs their tokens itself.
echo "== chat: 10,000 idle authenticated WebSockets on one replica"
$loadgen chat-idle --bin target/release/chat --db "$PG" --connections 10000 | record
echo "== chat: 2 replicas, 1,000 rooms, visitors on one, staff on the other, paced rates"
$loadgen chat-messages --bin target/release/chat --db "$PG" --rooms 1000 --staff 50 \
  --rates "${BENCH_CHAT_RATES:-500,1000,2000,4000,6000,7000}" --seconds "$SECONDS_PER_RUN" | record
# The floor beside it: pgbench runs the insert-and-bump transaction of one
# message (look up the client id, take the room's next seq, insert: the
# function chat_store_message, which the service uses for a message it
# cannot batch) on the same rooms, at the two replicas' pool size (2 x 16
# connections), one commit per message. The service stores the messages
# that arrive together in one transaction (chat_store_messages), so it can
# go past this floor.
echo "== floor: pgbench insert-and-bump, -c 32"
psql -q "$PG/bench_chat_messages" -c "CREATE TABLE bench_rooms AS SELECT row_number() OVER () AS n, id FROM rooms; \
  CREATE UNIQUE INDEX ON bench_rooms (n);" >/dev/null
rooms=$(psql -qtA "$PG/bench_chat_messages" -c "SELECT count(*) FROM bench_rooms")
cat > "$out/chat_insert.sql" <<SQL
\set r random(1, $rooms)
SELECT id AS room FROM bench_rooms WHERE n = :r \gset
SELECT * FROM chat_store_message(:room::uuid, gen_random_uuid()::text, NULL, gen_random_uuid(), gen_random_uuid(), 'visitor', 't=0', now());
SQL
chat_tps=$(pgbench -n -M prepared -c 32 -j 2 -T "$SECONDS_PER_RUN" -f "$out/chat_insert.sql" \
  "$PG/bench_chat_messages?sslmode=disable" 2>/dev/null | awk '/^tps/ {print $3; exit}')
echo "{\"bench\":\"chat_insert_floor\",\"tps\":${chat_tps:-0}}" | record
drop_db bench_chat_messages
echo "== chat: resume after 10,000 missed messages"
$loadgen chat-resume --bin target/release/chat --db "$PG" --messages 10000 | record
echo "== chat: 1,000 rooms opened at once against 50 online staff"
$loadgen chat-assign --bin target/release/chat --db "$PG" --rooms 1000 --staff 50 | record

# --- instance scheduling ---------------------------------------------------------
# loadgen starts a release scheduler of its own (database bench_scheduling_*,
# AMQP prefix bench-scheduling.<pid>.) and registers the hosts through the
# API; every allocation is a new user's, with a token signed beforehand.
echo "== scheduling: 100 clients over 50 hosts (which heartbeat meanwhile), as fast as they go, then paced at 1,000/s"
$loadgen scheduling-allocate --bin target/release/instance-scheduling --db "$PG" \
  --hosts 50 --clients 100 --seconds "$SECONDS_PER_RUN" --keep false | record
$loadgen scheduling-allocate --bin target/release/instance-scheduling --db "$PG" \
  --hosts 50 --clients 100 --seconds "$SECONDS_PER_RUN" --rate 1000 | record
# The floor beside it: pgbench runs the same claim (the function
# sched_allocate, as the service calls it: a new user, region local, pack)
# on the 50 hosts the run left (sessions ended, heartbeats fresh), at the
# service's pool size (16) and at the clients' concurrency (100).
cat > "$out/sched_allocate.sql" <<'SQL'
SELECT * FROM sched_allocate(gen_random_uuid(), ARRAY['local'], NULL, NULL, 1, 'pack', 15, 3600, gen_random_uuid(), gen_random_uuid(), gen_random_uuid());
SQL
for c in 16 100; do
  echo "== floor: pgbench sched_allocate, -c $c"
  psql -q "$PG/bench_scheduling_allocate" -c "UPDATE sessions SET status = 'ended', ended_at = now() WHERE status IN ('allocated', 'connected'); \
    UPDATE instances SET active_sessions = 0, last_heartbeat_at = now() + interval '1 hour'" >/dev/null
  sched_tps=$(pgbench -n -M prepared -c $c -j 2 -T "$SECONDS_PER_RUN" -f "$out/sched_allocate.sql" \
    "$PG/bench_scheduling_allocate?sslmode=disable" 2>/dev/null | awk '/^tps/ {print $3; exit}')
  echo "{\"bench\":\"scheduling_allocate_floor_c$c\",\"tps\":${sched_tps:-0}}" | record
done
drop_db bench_scheduling_allocate
echo "== scheduling: 1,000 hosts heartbeating once a second, allocations at 200/s beside them"
$loadgen scheduling-heartbeats --bin target/release/instance-scheduling --db "$PG" \
  --hosts 1000 --clients 10 --seconds "$SECONDS_PER_RUN" | record

# --- outbox to consumer --------------------------------------------------------
echo "== 10,000 events: outbox -> relay -> RabbitMQ -> consumer"
drop_db bench_outbox
for mode in burst prefill "paced --rate 1000" "paced --rate 2500"; do
  drop_db bench_outbox
  $loadgen outbox --db "$PG/bench_outbox?sslmode=disable" --events 10000 --writers 8 --mode "$mode" | record
done
drop_db bench_outbox

# The floor under the burst figure: while a prefilled outbox drains,
# pgbench asks for 5,000 bare outbox INSERT transactions a second (prepared,
# 8 clients, its own database in the same cluster). The cheapest writer
# there is and the pipeline share the two cores; what each gets is the most
# any writer could.
echo "== floor: pgbench's bare outbox INSERT at 5,000/s beside the drain"
for db in bench_outbox bench_outbox_floor; do
  drop_db $db
done
psql -q "$PG/postgres" -c "CREATE DATABASE bench_outbox_floor" >/dev/null
psql -q "$PG/bench_outbox_floor" -f crates/bus/sql/bus_tables.sql >/dev/null
cat > "$out/outbox_insert.sql" <<'SQL'
BEGIN;
INSERT INTO outbox (id, exchange, routing_key, message_type, payload) VALUES (gen_random_uuid(), 'events', 'account.enabled', 'account.enabled', '{"id":"7b0c8e9a-2a7d-4a53-9d3c-1f1f6d3e2a11","type":"account.enabled","version":1,"occurred_at":"2026-11-30T09:00:00.000000Z","data":{"user_id":"0d1f2e3c-4b5a-6978-8a9b-0c1d2e3f4a5b","revision":12}}');
COMMIT;
SQL
$loadgen outbox --db "$PG/bench_outbox?sslmode=disable" --events 40000 --writers 8 --mode prefill \
  > "$out/outbox_floor_drain.json" 2> "$out/outbox_floor.log" &
drain_pid=$!
until grep -q "the relay starts" "$out/outbox_floor.log" || ! kill -0 $drain_pid 2>/dev/null; do sleep 0.05; done
pgbench -n -M prepared -c 8 -j 2 -R 5000 -T 120 --progress=1 -f "$out/outbox_insert.sql" \
  "$PG/bench_outbox_floor?sslmode=disable" > "$out/outbox_floor_pgbench.log" 2>&1 &
pgbench_pid=$!
wait $drain_pid
kill $pgbench_pid 2>/dev/null || true
wait $pgbench_pid 2>/dev/null || true
# pgbench's rate over the whole seconds the drain lasted.
drain_seconds=$(jq -r '.seconds | floor' "$out/outbox_floor_drain.json")
insert_tps=$(awk -v limit="$drain_seconds" '/^progress:/ && n < limit {sum += $4; n++}
  END {printf "%.0f", n ? sum / n : 0}' "$out/outbox_floor_pgbench.log")
jq -c --argjson tps "$insert_tps" \
  '{bench: "outbox_floor_5000", drain_rps: .rps, pgbench_insert_tps: $tps}' \
  "$out/outbox_floor_drain.json" | record
for db in bench_outbox bench_outbox_floor; do
  drop_db $db
done

# --- worker ----------------------------------------------------------------------
echo "== worker: idle RSS, then 10,000 emails into a local SMTP sink"
WORKER_PREFIX="bench-worker.$$."
drop_db worker_bench
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
drop_db worker_bench
# What the services declared under this run's prefixes: queues by listing,
# the exchanges by name.
chat_prefixes=$(rabbitmqctl -q list_queues name 2>/dev/null | awk -F. '/^bench-(chat|scheduling)\./ {print $1 "." $2 "."}' | sort -u || true)
for prefix in "bench.$$." "$WORKER_PREFIX" $chat_prefixes; do
  queues=$(rabbitmqctl -q list_queues name 2>/dev/null | awk -v p="$prefix" 'index($0, p) == 1' | paste -sd, - || true)
  $loadgen forget --prefix "$prefix" --queues "$queues" --exchanges chat.live || true
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
f = rows["outbox_floor_5000"]
print(f"floor: a prefilled outbox drains at {f['drain_rps']:.0f}/s while pgbench's bare INSERT, asking for 5000/s, gets {f['pgbench_insert_tps']:.0f}/s")
for rate in (1000, 2500):
    p = rows[f"outbox_to_consumer_paced_{rate}"]
    print(f"outbox -> consumer paced at {rate}/s: p99 commit-to-handled {p['p99_ms']} ms (target <= 100)")
raw, w = rows["smtp_plain_client"], rows["worker_email"]
print(f"worker: {w['rps']:.0f} emails/s vs plain SMTP client {raw['rps']:.0f}/s: {100*w['rps']/raw['rps']:.0f}% (target >= 50%), p99 queue-to-delivered {w['p99_ms']} ms, errors {w['errors']}")
c = rows["chat_idle_connections"]
print(f"chat: {c['connections']} idle WebSockets, {c['bytes_per_connection']:.0f} bytes ({c['bytes_per_connection']/1024:.1f} KiB) of RSS each (target <= 16 KB)")
floor = rows["chat_insert_floor"]["tps"]
steps = sorted((r for k, r in rows.items() if k.startswith("chat_messages_")), key=lambda r: r["rate"])
good = [r for r in steps if r["p99_ms"] <= 50 and r["delivered"] >= r["sent"]]
for r in steps:
    print(f"chat messages at {r['rate']:.0f}/s: sent {r['sent']}, acked {r['acked']}, delivered {r['delivered']}, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
best = max((r["rate"] for r in good), default=0)
print(f"chat: highest rate with p99 <= 50 ms: {best:.0f}/s (goal >= 2000, or >= 60% of the floor); pgbench insert-and-bump floor {floor:.0f} tps ({100*best/floor if floor else 0:.0f}%)")
r = rows["chat_resume"]
print(f"chat resume of {r['messages']} messages: median {r['median_ms']} ms, worst {r['worst_ms']} ms (target < 1000)")
a = rows["chat_assign"]
print(f"chat assignment: {a['rooms']} rooms, {a['staff']} staff: p99 open-to-assigned {a['open_to_assigned_p99_ms']} ms (target <= 50), over capacity {a['over_capacity']} (target 0), {a['assigned_at_once']} assigned at once")
print(f"worker RSS: idle {rows['worker_idle_rss']['rss_mb']} MB (target <= 30), peak during the burst {rows['worker_burst_rss']['rss_mb']} MB")
a, p = rows["scheduling_allocate"], rows["scheduling_allocate_paced_1000"]
cap = rows["scheduling_capacity"]
f16, f100 = rows["scheduling_allocate_floor_c16"]["tps"], rows["scheduling_allocate_floor_c100"]["tps"]
print(f"scheduling: {a['rps']:.0f} allocations/s at 100 clients as fast as they go (p99 {a['p99_ms']} ms); paced at 1000/s: p99 {p['p99_ms']} ms (target >= 1000/s with p99 <= 25 ms), over capacity {cap['over_capacity']} (target 0); pgbench floor {f16:.0f} tps at -c 16, {f100:.0f} at -c 100")
h, alone, beside = rows["scheduling_heartbeats"], rows["scheduling_allocate_alone"], rows["scheduling_allocate_beside_1000_hosts"]
print(f"scheduling heartbeats: {h['rps']:.0f}/s from 1000 hosts, p99 {h['p99_ms']} ms (target <= 20); allocations at 200/s p99 {alone['p99_ms']} ms alone, {beside['p99_ms']} ms beside them")
PY
