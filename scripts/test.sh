#!/usr/bin/env bash
# The whole check: what CI runs (.ci/run) and what a developer runs before
# pushing. Bootstrap, formatting, lints, every test against real PostgreSQL
# and RabbitMQ (and the real Traefik), the schema drift check, the offline
# checks of the deployment files.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step bootstrap
scripts/bootstrap.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --workspace --quiet 2>&1 | tee target/test-output.txt
# cargo's exit status covers failures; make sure tests actually ran.
grep -q '^test result: ok\. [1-9]' target/test-output.txt

step "schema drift"
scripts/check-schema.sh

step "deployment files (offline)"
scripts/check-deploy.sh
scripts/test-check-deploy.sh

step "leftovers"
scripts/sweep-test-resources.sh

echo
echo "all checks passed"
