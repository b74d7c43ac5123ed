//! Checks every service's tests make the same way: its configuration
//! documentation against `.env.example`, its migrations round trip, its copy
//! of the bus tables, one-line configuration errors from its binary.

use std::path::Path;
use std::process::Command;

/// Every variable in the `//! | `VAR` |` table of a service's `config.rs`
/// appears (set or commented out) in `.env.example`, and no variable is
/// given there twice: one `.env` is loaded into every service, so a
/// variable listed twice (each service's `PORT`) would clash.
pub fn env_example_lists_config(manifest_dir: &str) {
    let root = Path::new(manifest_dir);
    let example = std::fs::read_to_string(root.join("../../.env.example")).unwrap_or_default();
    let documented = std::fs::read_to_string(root.join("src/config.rs")).unwrap_or_default();
    let variables: Vec<&str> = documented
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `"))
        .filter_map(|l| l.split('`').next())
        .filter(|v| {
            v.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        })
        .collect();
    assert!(
        variables.len() >= 5,
        "no variable table found in {manifest_dir}/src/config.rs"
    );
    let settings = env_example_settings(&example);
    for variable in variables {
        assert!(
            settings.iter().any(|(name, _)| name == variable),
            "{variable} is not in .env.example"
        );
    }
    let mut shared: Vec<&str> = settings
        .iter()
        .filter(|(_, per_service)| !per_service)
        .map(|(name, _)| name.as_str())
        .collect();
    shared.sort_unstable();
    for pair in shared.windows(2) {
        assert_ne!(pair[0], pair[1], "{} is set twice in .env.example", pair[0]);
    }
}

/// `(variable, per service)` for each setting of `.env.example`: shared
/// ones are `# VAR=value` lines; per-service ones stand after a service
/// name in the indented block (`#   auth  PORT=8001 ...`), never alone on
/// a line, so uncommenting one cannot set it for every service.
fn env_example_settings(example: &str) -> Vec<(String, bool)> {
    let mut settings = Vec::new();
    for line in example.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            if let Some((name, _)) = line.split_once('=') {
                settings.push((name.trim().to_string(), false));
            }
            continue;
        };
        let per_service = rest.starts_with("   ");
        let words = rest.split_whitespace();
        let words: Vec<&str> = if per_service {
            words.collect()
        } else {
            words.take(1).collect()
        };
        for word in words {
            if let Some((name, _)) = word.split_once('=') {
                let is_name = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
                if is_name {
                    settings.push((name.to_string(), per_service));
                }
            }
        }
    }
    settings
}

/// The service's first migration carries the bus tables exactly.
pub fn migration_includes_bus_tables(manifest_dir: &str) {
    first_migration_includes(manifest_dir, bus::outbox::MIGRATION_SQL, "crates/bus/sql");
}

/// The service's first migration creates `signing_keys` exactly as the
/// signing crate's SQL does.
pub fn migration_includes_signing_keys(manifest_dir: &str) {
    first_migration_includes(manifest_dir, signing::MIGRATION_SQL, "crates/signing/sql");
}

fn first_migration_includes(manifest_dir: &str, sql: &str, source: &str) {
    let dir = Path::new(manifest_dir).join("migrations");
    let first = std::fs::read_dir(&dir)
        .ok()
        .and_then(|entries| entries.flatten().map(|e| e.path()).min())
        .map(|p| p.join("up.sql"));
    let up = first
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    assert!(
        up.contains(sql.trim()),
        "the tables in {} drifted from {source}",
        dir.display()
    );
}

/// Runs `binary migrate` with only `variable=value` set and expects it to
/// fail with one line on stderr that names the variable, without echoing a
/// value that may be a secret.
pub fn bad_setting_is_one_line(binary: &str, variable: &str, value: &str) {
    let output = Command::new(binary)
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(variable, value)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(err) => panic!("cannot run {binary}: {err}"),
    };
    assert!(!output.status.success(), "{variable}={value} was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(variable), "{stderr}");
}

/// What every service serves besides its API (liveness, readiness with
/// database and broker, the offline docs page, `/metrics`), and that its
/// OpenAPI document and its routes agree: every documented operation is
/// served (asked without credentials or body, it answers one of its
/// documented statuses, never the fallback's 404 or 405), every other
/// method on a documented path is a 405 whose `Allow` lists exactly the
/// documented ones, and an undocumented path is a 404. Handlers can only
/// be mounted with their documentation, so nothing is served undocumented.
pub async fn serves_platform_routes(address: &str, prefix: &str, service: &str) {
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        async move {
            match client.get(&path).send().await {
                Ok(response) => response,
                Err(err) => panic!("GET {path}: {err}"),
            }
        }
    };
    assert_eq!(
        get(format!("{address}{prefix}/healthz")).await.status(),
        200
    );
    let ready: serde_json::Value = get(format!("{address}{prefix}/readyz"))
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(ready["checks"]["database"], "ok", "{ready}");
    assert_eq!(ready["checks"]["broker"], "ok", "{ready}");

    let spec: serde_json::Value = get(format!("{address}{prefix}/openapi.json"))
        .await
        .json()
        .await
        .unwrap_or_default();
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{spec}"
    );
    let operations = documented_operations(&spec);
    assert!(
        operations
            .iter()
            .any(|(_, path, _)| path.as_str() == format!("{prefix}/healthz")),
        "{service}: the operational routes are not documented"
    );
    let mut ids = std::collections::HashSet::new();
    for (method, path, operation) in &operations {
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(
            ids.insert(id.to_string()),
            "{service}: operationId {id} twice"
        );
        let concrete = concrete(path);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let response = match client
            .request(method.clone(), format!("{address}{concrete}"))
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) => panic!("{method} {concrete}: {err}"),
        };
        let status = response.status().as_u16().to_string();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(
            operation["responses"][&status].is_object(),
            "{service}: {method} {path} answered {status}, which its documentation does not list: {body}"
        );
        assert!(
            body["code"] != "method_not_allowed" && body["detail"] != "no such route",
            "{service}: {method} {path} is documented but not served: {body}"
        );
    }

    // Each documented path, asked with a method it does not serve: a 405
    // whose Allow lists its documented methods.
    for path in operations
        .iter()
        .map(|(_, path, _)| path)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let mut documented: Vec<&str> = operations
            .iter()
            .filter(|(_, other, _)| other == path)
            .map(|(method, _, _)| method.as_str())
            .collect();
        documented.sort_unstable();
        let concrete = concrete(path);
        let response = match client
            .request(reqwest::Method::TRACE, format!("{address}{concrete}"))
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) => panic!("TRACE {concrete}: {err}"),
        };
        assert_eq!(response.status(), 405, "TRACE {concrete}");
        let mut allowed: Vec<&str> = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(", ")
            .collect();
        allowed.sort_unstable();
        assert_eq!(allowed, documented, "Allow of {concrete}");
    }
    let unknown = get(format!("{address}{prefix}/no-such-route")).await;
    assert_eq!(unknown.status(), 404);

    let docs = get(format!("{address}{prefix}/docs"))
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(
        docs.contains(&format!("{prefix}/docs/swagger-ui-bundle.js")),
        "{docs}"
    );
    assert!(
        !docs.contains("https://"),
        "the docs page must not load anything from the network"
    );
    let bundle = get(format!("{address}{prefix}/docs/swagger-ui-bundle.js")).await;
    assert_eq!(bundle.status(), 200);
    assert!(bundle.bytes().await.map(|b| b.len()).unwrap_or(0) > 100_000);

    let metrics = get(format!("{address}/metrics"))
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(metrics.contains("http_requests_total{"), "{metrics}");
    assert!(
        metrics.contains(&format!("route=\"{prefix}/healthz\"")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("service=\"{service}\"")),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket"));
}

/// `(METHOD, path, operation)` for every operation of an OpenAPI document.
pub fn documented_operations(spec: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    let mut operations = Vec::new();
    if let Some(paths) = spec["paths"].as_object() {
        for (path, item) in paths {
            for method in [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ] {
                if item[method].is_object() {
                    operations.push((method.to_uppercase(), path.clone(), item[method].clone()));
                }
            }
        }
    }
    operations
}

/// A documented path with each `{parameter}` filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "0193b7d8-5d6c-7a36-9d5e-3a1f0c2b4e51"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A 503 problem with a `Retry-After` of at least a second: how every
/// service answers while a dependency is down.
pub async fn assert_unavailable(response: reqwest::Response, what: &str) {
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    assert_eq!(status, 503, "{what}: {body}");
    assert_eq!(content_type, "application/problem+json", "{what}");
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "{what}: no Retry-After"
    );
}

/// `binary openapi` prints the document committed as `docs/openapi/<name>.json`
/// (what the deploy checks read each service's routes from, without a
/// build). `UPDATE_OPENAPI=1` writes it instead.
pub fn openapi_is_committed(binary: &str, manifest_dir: &str, name: &str) {
    let output = match Command::new(binary).arg("openapi").env_clear().output() {
        Ok(output) => output,
        Err(err) => panic!("cannot run {binary}: {err}"),
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    let document: serde_json::Value = match serde_json::from_str(&printed) {
        Ok(document) => document,
        Err(err) => panic!("`{binary} openapi` printed no JSON: {err}"),
    };
    assert!(document["paths"].as_object().is_some_and(|p| !p.is_empty()));
    let committed = Path::new(manifest_dir).join(format!("../../docs/openapi/{name}.json"));
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        if let Err(err) = std::fs::write(&committed, &printed) {
            panic!("cannot write {}: {err}", committed.display());
        }
    }
    let on_disk = std::fs::read_to_string(&committed).unwrap_or_default();
    assert!(
        on_disk == printed,
        "{} differs from `{name} openapi`: run UPDATE_OPENAPI=1 cargo test -p {name} openapi",
        committed.display()
    );
}

/// `binary healthcheck` exits 0 against the ready service at `url`
/// (`http://127.0.0.1:<port>`), leaving its mark that the service has been
/// ready, and 1, with a line saying why, when nothing listens.
pub fn healthcheck_command_reports(binary: &str, url: &str) {
    let port: u16 = match url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
    {
        Some(port) => port,
        None => panic!("no port in {url}"),
    };
    let scratch = std::env::temp_dir().join(format!("healthcheck-{}", uuid::Uuid::new_v4()));
    if let Err(err) = std::fs::create_dir_all(&scratch) {
        panic!("cannot create {}: {err}", scratch.display());
    }
    let run = |port: u16| match Command::new(binary)
        .arg("healthcheck")
        .env_clear()
        .env("PORT", port.to_string())
        .env("TMPDIR", &scratch)
        .output()
    {
        Ok(output) => output,
        Err(err) => panic!("cannot run {binary}: {err}"),
    };
    let up = run(port);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let marks = std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0);
    assert_eq!(marks, 1, "the service's first readiness is remembered");
    let again = run(port);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let closed = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(address) => address.port(),
        Err(err) => panic!("no free port: {err}"),
    };
    let down = run(closed);
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    let _ = std::fs::remove_dir_all(&scratch);
}

#[cfg(test)]
mod tests {
    use super::env_example_settings;

    #[test]
    fn reads_shared_and_per_service_settings() {
        let example = "# --- shared\n# HOST=0.0.0.0   # listen address\nRUST_LOG=debug\n\
                       # a comment with x=1 in it\n\
                       #   auth  PORT=8001  DATABASE_URL=postgres://h/auth\n";
        assert_eq!(
            env_example_settings(example),
            [
                ("HOST".to_string(), false),
                ("RUST_LOG".to_string(), false),
                ("PORT".to_string(), true),
                ("DATABASE_URL".to_string(), true),
            ]
        );
    }
}
