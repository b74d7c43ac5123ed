#!/usr/bin/env bash
# Shows that every check of scripts/check-deploy.sh can fail: a copy of the
# deployment files passes them all, and each deliberately broken copy fails
# the check that is meant to catch it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

copy() { # a fresh copy of what the checks read, in $work/$1
  local dir="$work/$1"
  mkdir -p "$dir/docs" "$dir/.ci"
  cp -a "$root"/docker-compose.yml "$root"/docker-compose.override.yml "$root"/.gitlab-ci.yml "$dir"/
  cp -a "$root"/deploy "$root"/traefik "$root"/scripts "$dir"/
  cp -a "$root"/docs/openapi "$dir"/docs/
  cp -a "$root"/.ci/run "$dir"/.ci/
  echo "$dir"
}

# edit FILE PYTHON-EXPRESSION: rewrites FILE with s (its text) transformed;
# the edit must change the file, or the broken copy would not be broken.
edit() {
  python3 - "$1" "$2" <<'EOF'
import sys
path, expression = sys.argv[1], sys.argv[2]
s = open(path).read()
changed = eval(expression)
if changed == s:
    sys.exit(f"test-check-deploy.sh: the edit left {path} as it was: {expression}")
open(path, "w").write(changed)
EOF
}

failures=0
expect_failure() { # name check dir: the check must fail on the broken copy
  local name=$1 check=$2 dir=$3
  if "$root/scripts/check-deploy.sh" --root "$dir" "$check" > "$work/$name.log" 2>&1; then
    echo "FAIL: $name: check $check passed a broken copy"
    sed 's/^/    /' "$work/$name.log"
    failures=$((failures + 1))
  else
    echo "ok: $name: check $check caught it: $(grep -m1 -E 'check_stack|must|not allowed|does not match|DL[0-9]{4}|SC[0-9]{4}|is not valid|error' "$work/$name.log" -A1 | tr -s ' \n' ' ' | cut -c1-200)"
  fi
}

echo "--- an unbroken copy passes every check"
"$root/scripts/check-deploy.sh" --root "$(copy intact)" > "$work/intact.log" 2>&1 \
  || { cat "$work/intact.log"; echo "FAIL: the unbroken copy does not pass"; exit 1; }

dir=$(copy stack-type)
edit "$dir/docker-compose.yml" "s.replace('replicas: 2', 'replicas: two', 1)"
expect_failure stack-type stack "$dir"

dir=$(copy stack-schema)
# docker stack config accepts this; the compose-spec schema does not.
edit "$dir/docker-compose.yml" "s.replace('  postgres:\n    image:', '  postgres:\n    container_name: \"-\"\n    image:', 1)"
expect_failure stack-schema stack "$dir"

dir=$(copy rules-depends-on)
# The short form: docker stack config refuses the long one itself.
edit "$dir/docker-compose.yml" "s.replace('  accounts:\n    image:', '  accounts:\n    depends_on: [auth]\n    image:', 1)"
expect_failure rules-depends-on stack "$dir"

dir=$(copy rules-password)
edit "$dir/docker-compose.yml" "s.replace('AMQP_URL: amqp://platform@rabbitmq', 'AMQP_URL: amqp://platform:hunter2@rabbitmq', 1)"
expect_failure rules-password stack "$dir"

dir=$(copy rules-unpinned)
edit "$dir/docker-compose.yml" "s.replace('          - node.labels.\${STACK_NAME:-platform}.traefik-certificates == true\n', '', 1)"
expect_failure rules-unpinned stack "$dir"

dir=$(copy rules-no-healthcheck)
edit "$dir/docker-compose.yml" "s.replace('      test: [\"CMD\", \"/usr/local/bin/chat\", \"healthcheck\"]', '      disable: true', 1)"
expect_failure rules-no-healthcheck stack "$dir"

dir=$(copy override)
edit "$dir/docker-compose.override.yml" "s.replace('target: auth', 'targett: auth', 1)"
expect_failure override override "$dir"

dir=$(copy gitlab-ci)
edit "$dir/.gitlab-ci.yml" "s.replace('when: manual', 'when: sometimes', 1)"
expect_failure gitlab-ci gitlab-ci "$dir"

dir=$(copy dockerfile)
edit "$dir/deploy/Dockerfile" "s.replace('FROM debian:bookworm-slim AS runtime', 'FROM debian:latest AS runtime', 1)"
expect_failure dockerfile dockerfile "$dir"

dir=$(copy shell)
edit "$dir/scripts/deploy.sh" "s + '\necho \$1\n'"
expect_failure shell shell "$dir"

dir=$(copy labels-typo)
edit "$dir/docker-compose.yml" "s.replace('auth-ratelimit.ratelimit.average=', 'auth-ratelimit.ratelimit.averag=', 1)"
expect_failure labels-typo labels "$dir"

dir=$(copy labels-missing-middleware)
edit "$dir/docker-compose.yml" "s.replace('accounts.middlewares=rate-limit@file', 'accounts.middlewares=rate-limits@file', 1)"
expect_failure labels-missing-middleware labels "$dir"

dir=$(copy labels-no-port)
edit "$dir/docker-compose.yml" "s.replace('- traefik.http.services.\${STACK_NAME:-platform}-accounts.loadbalancer.server.port=8002\n', '', 1)"
expect_failure labels-no-port labels "$dir"

dir=$(copy labels-unprefixed)
edit "$dir/docker-compose.yml" "s.replace('traefik.http.middlewares.\${STACK_NAME:-platform}-auth-ratelimit', 'traefik.http.middlewares.auth-ratelimit').replace('\${STACK_NAME:-platform}-auth-ratelimit,', 'auth-ratelimit,')"
expect_failure labels-unprefixed labels "$dir"

dir=$(copy prefixes-wrong)
edit "$dir/docker-compose.yml" "s.replace('PathPrefix(\`/api/auth/\`)', 'PathPrefix(\`/api/authn/\`)', 1)"
expect_failure prefixes-wrong prefixes "$dir"

dir=$(copy prefixes-unrouted)
edit "$dir/docker-compose.yml" "s.replace('- traefik.enable=true\n        - traefik.swarm.network=traefik-public\n        - \"traefik.http.routers.\${STACK_NAME:-platform}-scheduling', '- traefik.swarm.network=traefik-public\n        - \"traefik.http.routers.\${STACK_NAME:-platform}-scheduling', 1)"
expect_failure prefixes-unrouted prefixes "$dir"

if [ "$failures" != 0 ]; then
  echo "test-check-deploy.sh: $failures check(s) let a broken copy through" >&2
  exit 1
fi
echo "test-check-deploy.sh: every check fails on its broken copy"
