#!/usr/bin/env python3
"""The Swarm stack's own rules, and its Traefik labels, checked by the real
Traefik and against the services' route tables.

    check_stack.py rules    ROOT STACK_YML   what the stack promises ops
    check_stack.py labels   ROOT STACK_YML   load the labels into Traefik
    check_stack.py prefixes ROOT STACK_YML   every router's prefix is served

STACK_YML is docker-compose.yml rendered by `docker stack config`. `rules`
checks what no schema says: no depends_on, passwords only as *_FILE from
Docker secrets, every named volume pinned to its node label, every service
health-checked and updated with rollback (start-first unless it owns a
volume or host ports), RabbitMQ's host name fixed. `labels`
turns every service's `deploy.labels` into a file-provider configuration (a
service's `loadbalancer.server.port` becomes a server URL, as the swarm
provider would make it) and starts Traefik with the production static file,
adapted to run here: local ports, the file provider instead of swarm, the
ACME resolver kept but pointed at nowhere. Traefik must report every router,
middleware and service the labels define as enabled, with no error.
`prefixes` reads each routed service's OpenAPI document (docs/openapi, kept
equal to what the binary serves by its tests) and checks that every
router's Path/PathPrefix is one the service serves, that together they
cover all its routes but /metrics, and that every public service has one.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

# Label keys whose value Traefik reads as a comma-separated list.
LIST_KEYS = {"entrypoints", "middlewares", "excludedcontenttypes", "includedcontenttypes", "sourcerange"}


def fail(message):
    print(f"check_stack: {message}", file=sys.stderr)
    sys.exit(1)


def deploy_labels(service):
    """A service's deploy.labels as a dict, whichever form they were written in."""
    labels = (service.get("deploy") or {}).get("labels") or {}
    if isinstance(labels, list):
        labels = dict(item.split("=", 1) for item in labels)
    return labels


def stack_labels(stack):
    """(compose service, {label: value}) for each service that Traefik routes."""
    routed = []
    for name, service in (stack.get("services") or {}).items():
        labels = deploy_labels(service)
        if "labels" in service and any(k.startswith("traefik.") for k in service["labels"]):
            fail(f"{name}: Traefik labels belong under deploy.labels in a swarm stack, not the container's")
        if str(labels.get("traefik.enable", "false")).lower() == "true":
            routed.append((name, labels))
    return routed


def nest(tree, path, value):
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def dynamic_configuration(routed, stack_name, closed_url):
    """The labels as Traefik's file provider reads them, and what they define."""
    config = {}
    defined = {"routers": set(), "middlewares": set(), "services": set()}
    ports = {}
    for compose_service, labels in routed:
        for key, value in labels.items():
            parts = key.split(".")
            if parts[0] != "traefik" or parts[1] in ("enable", "swarm", "docker"):
                continue
            if len(parts) < 5 or parts[1] not in ("http", "tcp", "udp"):
                fail(f"{compose_service}: unexpected label {key}")
            protocol, kind, name, rest = parts[1], parts[2], parts[3], parts[4:]
            if kind not in defined:
                fail(f"{compose_service}: unexpected label {key}")
            if not name.startswith(f"{stack_name}-"):
                fail(f"{compose_service}: {kind[:-1]} {name} is not prefixed with the stack name ({stack_name}-)")
            defined[kind].add(name)
            if kind == "services" and [p.lower() for p in rest] == ["loadbalancer", "server", "port"]:
                ports[name] = value
                nest(config, [protocol, kind, name, "loadbalancer", "servers"], [{"url": closed_url}])
                continue
            if rest[-1].lower() in LIST_KEYS:
                value = [item.strip() for item in value.split(",") if item.strip()]
            nest(config, [protocol, kind, name] + rest, value)
    for service in sorted(defined["services"]):
        if service not in ports:
            fail(f"service {service} has no loadbalancer.server.port label (the swarm provider would guess)")
        if not str(ports[service]).isdigit():
            fail(f"service {service}: loadbalancer.server.port={ports[service]} is not a port")
    return config, defined


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def static_configuration(production, dynamic_dir, state_dir):
    """The production static file, made to run on this machine: only what
    reaches outside changes (addresses, the Docker socket, the file
    provider's directory, ACME's server and store, the tracing endpoint),
    so Traefik parses the rest as production will."""
    providers = production.get("providers") or {}
    swarm = providers.get("swarm")
    if not isinstance(swarm, dict):
        fail("traefik/traefik.yml: providers.swarm is missing")
    if swarm.get("exposedByDefault") is not False:
        fail("traefik/traefik.yml: providers.swarm.exposedByDefault must be false")
    if "swarmMode" in json.dumps(production):
        fail("traefik/traefik.yml: docker.swarmMode was removed in Traefik v3: use providers.swarm")
    if "file" not in providers:
        fail("traefik/traefik.yml: no file provider for the shared middlewares")
    static = json.loads(json.dumps(production))
    entry_points = static.get("entryPoints") or {}
    for entry in entry_points.values():
        entry["address"] = f"127.0.0.1:{free_port()}"
    api_port = free_port()
    entry_points.setdefault("traefik", {})["address"] = f"127.0.0.1:{api_port}"
    static["entryPoints"] = entry_points
    static["providers"]["swarm"]["endpoint"] = f"unix://{state_dir}/no-docker.sock"
    static["providers"]["file"] = {"directory": dynamic_dir}
    # The API, to read what Traefik made of the configuration.
    static["api"] = {"insecure": True, "dashboard": False}
    if "ping" not in static:
        fail("traefik/traefik.yml: no ping (the container's health check needs it)")
    for name, resolver in (static.get("certificatesResolvers") or {}).items():
        acme = resolver.get("acme") or {}
        # Kept, so routers that name it find it; it asks nowhere for certificates.
        acme["caServer"] = "https://127.0.0.1:1/directory"
        acme["storage"] = os.path.join(state_dir, f"{name}.json")
    otlp_http = ((static.get("tracing") or {}).get("otlp") or {}).get("http")
    if isinstance(otlp_http, dict):
        otlp_http["endpoint"] = f"http://127.0.0.1:{free_port()}/v1/traces"
    access_log = static.get("accessLog")
    if isinstance(access_log, dict):
        access_log.pop("filePath", None)
    log = static.setdefault("log", {})
    log.pop("filePath", None)
    return static, api_port


# Errors that come of running production's configuration here, where no
# Docker socket, ACME server or collector is: anything else is a finding.
EXPECTED_HERE = ("acme", "swarm", "docker", "otlp", "opentelemetry", "traces export", "127.0.0.1:1/")


def errors_in(log):
    found = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
            is_error = str(entry.get("level", "")).lower() in ("error", "fatal", "panic")
        except ValueError:
            is_error = " ERR " in line or " FTL " in line
        if is_error and not any(word in line.lower() for word in EXPECTED_HERE):
            found.append(line)
    return found


def get_json(url):
    with urllib.request.urlopen(url, timeout=2) as answer:
        return json.load(answer)


def check_labels(root, stack):
    stack_name = os.environ.get("STACK_NAME", "")
    routed = stack_labels(stack)
    if not routed:
        fail("no service has traefik.enable=true")
    closed_url = f"http://127.0.0.1:{free_port()}"
    config, defined = dynamic_configuration(routed, stack_name, closed_url)
    with open(os.path.join(root, "traefik/traefik.yml")) as f:
        production = yaml.safe_load(f)
    resolvers = set((production.get("certificatesResolvers") or {}).keys())
    state = tempfile.mkdtemp(prefix="check-stack-")
    process = None
    try:
        dynamic_dir = os.path.join(state, "dynamic")
        os.makedirs(dynamic_dir)
        with open(os.path.join(dynamic_dir, "labels.yml"), "w") as f:
            yaml.safe_dump(config, f)
        shared = os.path.join(root, "traefik/dynamic")
        for name in os.listdir(shared):
            shutil.copy(os.path.join(shared, name), dynamic_dir)
        static, api_port = static_configuration(production, dynamic_dir, state)
        static_file = os.path.join(state, "traefik.yml")
        with open(static_file, "w") as f:
            yaml.safe_dump(static, f)
        log_path = os.path.join(state, "traefik.log")
        with open(log_path, "w") as log:
            process = subprocess.Popen(["traefik", f"--configFile={static_file}"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        api = f"http://127.0.0.1:{api_port}/api"
        expected = {kind: {f"{name}@file" for name in names} for kind, names in defined.items()}
        report = {}
        deadline = time.time() + 20
        while time.time() < deadline:
            if process.poll() is not None:
                break
            try:
                report = {kind: {item["name"]: item for item in get_json(f"{api}/http/{kind}")} for kind in expected}
                if all(expected[kind] <= set(report[kind]) for kind in expected):
                    break
            except OSError:
                pass
            time.sleep(0.3)
        with open(log_path) as f:
            log = f.read()
        problems = []
        for kind, names in expected.items():
            for name in sorted(names):
                item = report.get(kind, {}).get(name)
                if item is None:
                    problems.append(f"{kind[:-1]} {name} was not loaded")
                elif item.get("status") != "enabled" or item.get("error"):
                    problems.append(f"{kind[:-1]} {name}: {item.get('status')} {item.get('error')}")
        for name, router in report.get("routers", {}).items():
            if name in expected["routers"]:
                resolver = (router.get("tls") or {}).get("certResolver")
                if resolver and resolver not in resolvers:
                    problems.append(f"router {name} uses the resolver {resolver}, which traefik/traefik.yml does not define")
        if process.poll() is not None:
            problems.append(f"Traefik exited ({process.returncode}) with the production static file")
        problems += [f"Traefik: {line}" for line in errors_in(log)]
        if problems:
            fail("the stack's labels in the real Traefik:\n  " + "\n  ".join(problems))
        counts = ", ".join(f"{len(names)} {kind}" for kind, names in expected.items())
        print(f"check_stack: Traefik loaded the stack's labels: {counts}, all enabled")
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(state, ignore_errors=True)


RULE_PATHS = re.compile(r"\b(Path|PathPrefix)\(\s*`([^`]*)`\s*\)")


def routes_of(root, binary):
    path = os.path.join(root, "docs/openapi", f"{binary}.json")
    if not os.path.exists(path):
        fail(f"{binary}: no API document {path} to read its routes from")
    with open(path) as f:
        document = json.load(f)
    paths = document.get("paths") or {}
    public = any(tag != "operations" for operations in paths.values() for op in operations.values() for tag in op.get("tags", []))
    return set(paths), public


def matches(matcher, value, path):
    return path == value if matcher == "Path" else path.startswith(value)


def check_prefixes(root, stack):
    routed = dict(stack_labels(stack))
    # Which compose service (binary) serves each Traefik service, and the
    # Path/PathPrefix matchers of the routers that lead there.
    owner = {}
    for compose_service, labels in routed.items():
        for key in labels:
            parts = key.split(".")
            if len(parts) > 3 and parts[1] == "http" and parts[2] == "services":
                owner[parts[3]] = compose_service
    matchers = {}
    for compose_service, labels in routed.items():
        for key, rule in labels.items():
            parts = key.split(".")
            if len(parts) == 5 and parts[1] == "http" and parts[2] == "routers" and parts[4] == "rule":
                router = parts[3]
                target = labels.get(f"traefik.http.routers.{router}.service")
                target = owner.get(target, compose_service) if target else compose_service
                found = RULE_PATHS.findall(rule)
                if not found:
                    fail(f"router {router}: its rule has no Path or PathPrefix: {rule}")
                for matcher, value in found:
                    matchers.setdefault(target, []).append((router, matcher, value))
    problems = []
    checked = 0
    for binary in sorted({name for name in stack.get("services", {})}):
        image = str(stack["services"][binary].get("image", ""))
        if not os.path.exists(os.path.join(root, "docs/openapi", f"{binary}.json")):
            continue  # not one of ours (traefik, postgres, rabbitmq)
        routes, public = routes_of(root, binary)
        own = matchers.get(binary, [])
        if public and not own:
            problems.append(f"{binary} ({image}) serves a public API but no router leads to it")
        for key, value in routed.get(binary, {}).items():
            if key.endswith(".loadbalancer.healthcheck.path") and value not in routes:
                problems.append(f"{binary}: {key}={value} is no route of {binary}")
        for router, matcher, value in own:
            checked += 1
            if matcher == "PathPrefix" and not value.endswith("/"):
                problems.append(f"router {router}: PathPrefix(`{value}`) would also take {value}-something: end it with /")
            if not any(matches(matcher, value, route) for route in routes):
                problems.append(f"router {router}: {matcher}(`{value}`) is no route of {binary}")
            if matches(matcher, value, "/metrics"):
                problems.append(f"router {router}: {matcher}(`{value}`) routes /metrics")
        if own:
            uncovered = sorted(r for r in routes if r != "/metrics" and not any(matches(m, v, r) for _, m, v in own))
            for route in uncovered:
                problems.append(f"{binary} serves {route}, which no router leads to")
    if problems:
        fail("routers against the services' route tables:\n  " + "\n  ".join(problems))
    print(f"check_stack: {checked} router matchers are routes their services serve; every public service has one")


SECRET_WORDS = ("PASS", "SECRET", "TOKEN", "PRIVATE_KEY")


def environment_of(service):
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return environment


def networks_of(service):
    networks = service.get("networks") or {}
    return set(networks) if isinstance(networks, (dict, list)) else set()


def label_rules(name, service, services):
    """A routed service: Traefik can reach it on the network its labels name,
    at the port it listens on."""
    labels = deploy_labels(service)
    if str(labels.get("traefik.enable", "false")).lower() != "true":
        return []
    problems = []
    network = labels.get("traefik.swarm.network")
    traefik = [n for n, s in services.items() if str(s.get("image", "")).startswith("traefik")]
    if not network:
        problems.append(f"{name}: no traefik.swarm.network label (Traefik would pick any of its networks)")
    else:
        if network not in networks_of(service):
            problems.append(f"{name}: traefik.swarm.network={network}, a network it is not on")
        for gateway in traefik:
            if network not in networks_of(services[gateway]):
                problems.append(f"{name}: traefik.swarm.network={network}, which {gateway} is not on")
    port = str(environment_of(service).get("PORT", ""))
    for key, value in labels.items():
        if key.endswith(".loadbalancer.server.port") and port and str(value) != port:
            problems.append(f"{name}: {key}={value}, but the service listens on PORT={port}")
    return problems


def check_rules(stack):
    stack_name = os.environ.get("STACK_NAME", "")
    problems = []
    services = stack.get("services") or {}
    named_volumes = set((stack.get("volumes") or {}).keys())
    for name, service in services.items():
        if "depends_on" in service:
            problems.append(f"{name}: depends_on: docker stack deploy ignores it, so it promises an order that Swarm does not keep")
        for variable, value in environment_of(service).items():
            if any(word in variable.upper() for word in SECRET_WORDS) and not variable.endswith("_FILE"):
                problems.append(f"{name}: {variable} is given in the stack: pass it as {variable}_FILE from a Docker secret")
            if variable.endswith("_FILE") and not str(value).startswith("/run/secrets/"):
                problems.append(f"{name}: {variable}={value} is not a Docker secret (/run/secrets/...)")
            if re.search(r"://[^/@\s:]+:[^/@\s]+@", str(value)):
                problems.append(f"{name}: {variable} holds a URL with a password")
        if not (service.get("healthcheck") or {}).get("test"):
            problems.append(f"{name}: no healthcheck")
        deploy = service.get("deploy") or {}
        update = deploy.get("update_config") or {}
        if update.get("failure_action") != "rollback":
            problems.append(f"{name}: deploy.update_config.failure_action is not rollback")
        if not deploy.get("rollback_config"):
            problems.append(f"{name}: no deploy.rollback_config")
        constraints = (deploy.get("placement") or {}).get("constraints") or []
        owned = []
        for volume in service.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            kind = volume.get("type", "volume") if isinstance(volume, dict) else "volume"
            if kind == "volume" and source in named_volumes:
                owned.append(source)
                label = f"node.labels.{stack_name}.{source} == true"
                if label not in [c.strip() for c in constraints]:
                    problems.append(f"{name}: volume {source} is not pinned by the constraint {label}")
        host_ports = any(isinstance(p, dict) and p.get("mode") == "host" for p in service.get("ports") or [])
        if not owned and not host_ports and update.get("order") != "start-first":
            problems.append(f"{name}: stateless, but deploy.update_config.order is not start-first")
        granted = {item.get("source") if isinstance(item, dict) else str(item) for item in service.get("secrets") or []}
        for variable, value in environment_of(service).items():
            if variable.endswith("_FILE") and str(value).startswith("/run/secrets/"):
                secret = str(value)[len("/run/secrets/"):]
                if secret not in granted:
                    problems.append(f"{name}: {variable} reads the secret {secret}, which the service is not given")
        problems += label_rules(name, service, services)
    for secret, spec in (stack.get("secrets") or {}).items():
        if not (spec or {}).get("external"):
            problems.append(f"secret {secret} is not external: the stack's passwords are created on the swarm, never read from a file")
    rabbitmq = [name for name, service in services.items() if "rabbitmq" in str(service.get("image", ""))]
    for name in rabbitmq:
        if not services[name].get("hostname"):
            problems.append(f"{name}: RabbitMQ needs a fixed hostname (its node name, and with it its data)")
    if not rabbitmq:
        problems.append("no RabbitMQ service")
    if problems:
        fail("the stack:\n  " + "\n  ".join(problems))
    print(f"check_stack: {len(services)} services: no depends_on, secrets as files, volumes pinned, health-checked, rolled back on failure")


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("rules", "labels", "prefixes"):
        fail("usage: check_stack.py rules|labels|prefixes ROOT STACK_YML")
    _, command, root, stack_file = sys.argv
    with open(stack_file) as f:
        stack = yaml.safe_load(f)
    if command == "rules":
        check_rules(stack)
    elif command == "labels":
        check_labels(root, stack)
    else:
        check_prefixes(root, stack)


if __name__ == "__main__":
    main()
