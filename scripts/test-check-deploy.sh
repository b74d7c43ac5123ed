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
# expect_failure name check dir reason: the check must fail on the broken
# copy, and say why (the extended regular expression `reason`), so that a
# copy broken in some other way does not count.
expect_failure() {
  local name=$1 check=$2 dir=$3 reason=$4
  if "$root/scripts/check-deploy.sh" --root "$dir" "$check" > "$work/$name.log" 2>&1; then
    echo "FAIL: $name: check $check passed a broken copy"
    sed 's/^/    /' "$work/$name.log"
    failures=$((failures + 1))
  elif ! grep -qE "$reason" "$work/$name.log"; then
    echo "FAIL: $name: check $check failed, but not for the reason expected ($reason)"
    sed 's/^/    /' "$work/$name.log"
    failures=$((failures + 1))
  else
    echo "ok: $name: check $check: $(grep -m1 -E "$reason" "$work/$name.log" | tr -s ' ' | cut -c1-160)"
  fi
}

echo "--- an unbroken copy passes every check"
"$root/scripts/check-deploy.sh" --root "$(copy intact)" > "$work/intact.log" 2>&1 \
  || { cat "$work/intact.log"; echo "FAIL: the unbroken copy does not pass"; exit 1; }

dir=$(copy stack-type)
edit "$dir/docker-compose.yml" "s.replace('replicas: 2', 'replicas: two', 1)"
expect_failure stack-type stack "$dir" "must be a integer"

dir=$(copy stack-schema)
# docker stack config accepts this; the compose-spec schema does not.
edit "$dir/docker-compose.yml" "s.replace('  postgres:\n    image:', '  postgres:\n    container_name: \"-\"\n    image:', 1)"
expect_failure stack-schema stack "$dir" "does not match"

dir=$(copy rules-depends-on)
# The short form: docker stack config refuses the long one itself.
edit "$dir/docker-compose.yml" "s.replace('  accounts:\n    image:', '  accounts:\n    depends_on: [auth]\n    image:', 1)"
expect_failure rules-depends-on stack "$dir" "accounts: depends_on"

dir=$(copy rules-password)
edit "$dir/docker-compose.yml" "s.replace('AMQP_URL: amqp://platform@rabbitmq', 'AMQP_URL: amqp://platform:hunter2@rabbitmq', 1)"
expect_failure rules-password stack "$dir" "URL with a password"

dir=$(copy rules-unpinned)
edit "$dir/docker-compose.yml" "s.replace('          - node.labels.\${STACK_NAME:-platform}.traefik-certificates == true\n', '', 1)"
expect_failure rules-unpinned stack "$dir" "traefik-certificates is not pinned"

dir=$(copy rules-no-healthcheck)
edit "$dir/docker-compose.yml" "s.replace('      test: [\"CMD\", \"/usr/local/bin/chat\", \"healthcheck\"]', '      disable: true', 1)"
expect_failure rules-no-healthcheck stack "$dir" "chat: no healthcheck"

dir=$(copy override)
edit "$dir/docker-compose.override.yml" "s.replace('target: auth', 'targett: auth', 1)"
expect_failure override override "$dir" "targett"

dir=$(copy gitlab-ci)
edit "$dir/.gitlab-ci.yml" "s.replace('when: manual', 'when: sometimes', 1)"
expect_failure gitlab-ci gitlab-ci "$dir" "when"

dir=$(copy dockerfile)
edit "$dir/deploy/Dockerfile" "s.replace('FROM debian:bookworm-slim AS runtime', 'FROM debian:latest AS runtime', 1)"
expect_failure dockerfile dockerfile "$dir" "DL3007"

dir=$(copy shell)
edit "$dir/scripts/deploy.sh" "s + '\necho \$1\n'"
expect_failure shell shell "$dir" "SC2086"

dir=$(copy labels-typo)
edit "$dir/docker-compose.yml" "s.replace('auth-ratelimit.ratelimit.average=', 'auth-ratelimit.ratelimit.averag=', 1)"
expect_failure labels-typo labels "$dir" "node: averag"

dir=$(copy labels-missing-middleware)
edit "$dir/docker-compose.yml" "s.replace('accounts.middlewares=rate-limit@file', 'accounts.middlewares=rate-limits@file', 1)"
expect_failure labels-missing-middleware labels "$dir" "rate-limits@file"

dir=$(copy labels-no-port)
edit "$dir/docker-compose.yml" "s.replace('- traefik.http.services.\${STACK_NAME:-platform}-accounts.loadbalancer.server.port=8002\n', '', 1)"
expect_failure labels-no-port labels "$dir" "no loadbalancer.server.port"

dir=$(copy labels-unprefixed)
edit "$dir/docker-compose.yml" "s.replace('traefik.http.middlewares.\${STACK_NAME:-platform}-auth-ratelimit', 'traefik.http.middlewares.auth-ratelimit').replace('\${STACK_NAME:-platform}-auth-ratelimit,', 'auth-ratelimit,')"
expect_failure labels-unprefixed labels "$dir" "auth-ratelimit is not prefixed"

dir=$(copy prefixes-wrong)
edit "$dir/docker-compose.yml" "s.replace('PathPrefix(\`/api/auth/\`)', 'PathPrefix(\`/api/authn/\`)', 1)"
expect_failure prefixes-wrong prefixes "$dir" "/api/authn/.* is no route of auth"

dir=$(copy prefixes-unrouted)
edit "$dir/docker-compose.yml" "s.replace('- traefik.enable=true\n        - traefik.swarm.network=traefik-public\n        - \"traefik.http.routers.\${STACK_NAME:-platform}-scheduling', '- traefik.swarm.network=traefik-public\n        - \"traefik.http.routers.\${STACK_NAME:-platform}-scheduling', 1)"
expect_failure prefixes-unrouted prefixes "$dir" "instance-scheduling .* no router leads to it"

dir=$(copy rules-rollback)
edit "$dir/docker-compose.yml" "s.replace('failure_action: rollback', 'failure_action: continue', 1)"
expect_failure rules-rollback stack "$dir" "failure_action is not rollback"

dir=$(copy rules-start-first)
edit "$dir/docker-compose.yml" "s.replace('order: start-first', 'order: stop-first', 1)"
expect_failure rules-start-first stack "$dir" "auth: stateless, but .* not start-first"

dir=$(copy rules-hostname)
edit "$dir/docker-compose.yml" "s.replace('    hostname: rabbitmq\n', '', 1)"
expect_failure rules-hostname stack "$dir" "needs a fixed hostname"

dir=$(copy rules-file-outside)
edit "$dir/docker-compose.yml" "s.replace('DATABASE_PASSWORD_FILE: /run/secrets/postgres_password', 'DATABASE_PASSWORD_FILE: /etc/postgres_password', 1)"
expect_failure rules-file-outside stack "$dir" "is not a Docker secret"

dir=$(copy rules-secret-not-given)
edit "$dir/docker-compose.yml" "s.replace('      - registration_secret\n', '', 1)"
expect_failure rules-secret-not-given stack "$dir" "reads the secret registration_secret, which the service is not given"

dir=$(copy rules-secret-from-file)
edit "$dir/docker-compose.yml" "s.replace('  smtp_password:\n    external: true', '  smtp_password:\n    file: ./deploy/dev-secrets/smtp_password', 1)"
expect_failure rules-secret-from-file stack "$dir" "secret smtp_password is not external"

dir=$(copy rules-literal-password)
edit "$dir/docker-compose.yml" "s.replace('      RABBITMQ_DEFAULT_USER: platform\n', '      RABBITMQ_DEFAULT_USER: platform\n      RABBITMQ_DEFAULT_PASS: hunter2\n', 1)"
expect_failure rules-literal-password stack "$dir" "RABBITMQ_DEFAULT_PASS is given in the stack"

dir=$(copy rules-wrong-port)
edit "$dir/docker-compose.yml" "s.replace('accounts.loadbalancer.server.port=8002', 'accounts.loadbalancer.server.port=8009', 1)"
expect_failure rules-wrong-port stack "$dir" "listens on PORT=8002"

dir=$(copy rules-wrong-network)
edit "$dir/docker-compose.yml" "s.replace('- traefik.swarm.network=traefik-public', '- traefik.swarm.network=traefik-publik', 1)"
expect_failure rules-wrong-network stack "$dir" "traefik-publik, a network it is not on"

dir=$(copy prefixes-healthcheck-path)
edit "$dir/docker-compose.yml" "s.replace('healthcheck.path=/api/auth/readyz', 'healthcheck.path=/api/auth/ready', 1)"
expect_failure prefixes-healthcheck-path prefixes "$dir" "healthcheck.path=/api/auth/ready is no route"

dir=$(copy prefixes-no-slash)
edit "$dir/docker-compose.yml" "s.replace('PathPrefix(\`/api/auth/\`)', 'PathPrefix(\`/api/auth\`)', 1)"
expect_failure prefixes-no-slash prefixes "$dir" "end it with /"

dir=$(copy static-typo)
edit "$dir/traefik/traefik.yml" "s.replace('serviceName: traefik', 'serviceNam: traefik', 1)"
expect_failure static-typo labels "$dir" "serviceNam"

dir=$(copy static-swarm-mode)
edit "$dir/traefik/traefik.yml" "s.replace('providers:\n', 'providers:\n  docker:\n    swarmMode: true\n', 1)"
expect_failure static-swarm-mode labels "$dir" "swarmMode was removed"

dir=$(copy static-exposed)
edit "$dir/traefik/traefik.yml" "s.replace('exposedByDefault: false', 'exposedByDefault: true', 1)"
expect_failure static-exposed labels "$dir" "exposedByDefault must be false"

if [ "$failures" != 0 ]; then
  echo "test-check-deploy.sh: $failures check(s) let a broken copy through" >&2
  exit 1
fi
echo "test-check-deploy.sh: every check fails on its broken copy"
