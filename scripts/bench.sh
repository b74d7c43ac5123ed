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
cargo build --release --quiet -p auth -p loadgen
loadgen=target/release/loadgen

record() { tee -a "$results"; }

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
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS bench_pgbench" >/dev/null
psql -q "$PG/postgres" -c "CREATE DATABASE bench_pgbench" >/dev/null
pgbench -q -i -s 10 "$PG/bench_pgbench?sslmode=disable" >/dev/null 2>&1
tps=$(pgbench -S -c 64 -j 2 -T "$SECONDS_PER_RUN" "$PG/bench_pgbench?sslmode=disable" 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')
echo "{\"bench\":\"pgbench_select_only\",\"tps\":$tps}" | record
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS bench_pgbench" >/dev/null

echo "== GET /sessions (authenticated)"
$loadgen sessions --base "$base" --users "$CONNECTIONS" --connections "$CONNECTIONS" --seconds "$SECONDS_PER_RUN" | record
echo "== POST /refresh (a write: rotation in one transaction)"
$loadgen refresh --base "$base" --users "$CONNECTIONS" --connections "$CONNECTIONS" --seconds "$SECONDS_PER_RUN" | record

kill $auth_pid 2>/dev/null || true
wait $auth_pid 2>/dev/null || true
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS auth_bench WITH (FORCE)" >/dev/null

python3 - "$results" <<'PY'
import json, sys
rows = {r["bench"]: r for r in map(json.loads, open(sys.argv[1]))}
raw, login = rows["argon2id_verify"]["rps"], rows["login"]["rps"]
pg, sess = rows["pgbench_select_only"]["tps"], rows["sessions"]
print()
print(f"login {login:.1f}/s vs raw argon2id {raw:.1f}/s: {100*login/raw:.0f}% (target >= 90%)")
print(f"GET /sessions {sess['rps']:.0f}/s vs pgbench -S {pg:.0f} tps: {100*sess['rps']/pg:.0f}% (target >= 50%), p99 {sess['p99_ms']} ms (target <= 10)")
r = rows["refresh"]
print(f"refresh {r['rps']:.0f}/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
print(f"idle RSS {rows['auth_idle_rss']['rss_mb']} MB (target <= 30)")
PY
