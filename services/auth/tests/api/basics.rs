use crate::helpers::*;
use std::process::Command;

#[tokio::test]
async fn health_readiness_metrics_and_docs() {
    let app = spawn_app().await;
    testkit::checks::serves_platform_routes(&app.address, "/api/auth", "auth").await;
    testkit::checks::healthcheck_command_reports(env!("CARGO_BIN_EXE_auth"), &app.address);
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let app = spawn_app().await;
    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    let generated = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "bad\tid")
        .send()
        .await
        .unwrap();
    assert_ne!(generated.headers()["x-request-id"], "bad\tid");
}

#[tokio::test]
async fn unknown_routes_and_malformed_bodies_are_problems() {
    let app = spawn_app().await;
    let (status, _, body) = problem(app.client.get(app.url("/nope")).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    // A route asked with a method it does not serve names the ones it does.
    for (method, path, allow) in [
        ("DELETE", "/login", "POST"),
        ("TRACE", "/healthz", "GET"),
        (
            "PUT",
            "/sessions/0193b7d8-5d6c-7a36-9d5e-3a1f0c2b4e51",
            "DELETE",
        ),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        let (status, headers, body) = problem(response).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (405, Some("method_not_allowed")),
            "{method} {path}"
        );
        assert_eq!(headers["allow"], allow, "{method} {path}");
    }

    let malformed = app
        .client
        .post(app.url("/login"))
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .unwrap();
    let (status, _, _) = problem(malformed).await;
    assert_eq!(status, 400);

    // A head too large is a problem too, not a bare status.
    let huge = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("x-padding", "y".repeat(40 * 1024))
        .send()
        .await
        .unwrap();
    let (status, _, body) = problem(huge).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (431, Some("request_header_fields_too_large"))
    );

    // 64 KiB is the most a body may hold, whichever extractor reads it.
    for path in ["/login", "/visitors"] {
        let padding = "x".repeat(platform::http::extract::JSON_LIMIT);
        let oversized = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(format!("{{\"display_name\":\"{padding}\"}}"))
            .send()
            .await
            .unwrap();
        let (status, _, body) = problem(oversized).await;
        assert_eq!(status, 413, "{path}: {body}");
    }

    let form = app
        .client
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(form).await.0, 415);
}

#[tokio::test]
async fn readiness_reports_a_broker_outage() {
    let proxy = testkit::TcpProxy::start("127.0.0.1:5672".parse().unwrap())
        .await
        .unwrap();
    let app = spawn_app_with(|config| {
        config.common.amqp_url = secrecy::SecretString::from(format!(
            "amqp://guest:guest@127.0.0.1:{}/%2f",
            proxy.port()
        ));
    })
    .await;
    proxy.cut();
    let reported = testkit::eventually(std::time::Duration::from_secs(10), || async {
        let response = app.client.get(app.url("/readyz")).send().await.ok()?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.ok()?;
        (status == 503 && body["checks"]["broker"] != "ok" && body["checks"]["database"] == "ok")
            .then_some(())
    })
    .await;
    assert!(reported.is_some(), "readyz did not report the broker");
    proxy.restore();
}

fn auth_binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_auth"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

#[test]
fn bad_configuration_stops_with_one_line_naming_the_variable() {
    for (variable, value) in [
        ("PORT", "eighty"),
        ("DATABASE_URL", "mysql://localhost/auth"),
        ("ACCESS_TOKEN_TTL_SECS", "5"),
        ("COOKIE_SECURE", "maybe"),
        ("RETRY_DELAYS_MS", "1,x"),
    ] {
        testkit::checks::bad_setting_is_one_line(env!("CARGO_BIN_EXE_auth"), variable, value);
    }
    // A value that may be a secret is never echoed.
    let output = auth_binary()
        .arg("migrate")
        .env("PORT", "s3cret-value")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&output.stderr).contains("s3cret-value"));
}

#[test]
fn env_example_lists_every_variable() {
    testkit::checks::env_example_lists_config(env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn migrations_go_up_down_and_up_again() {
    let db = fresh_database();
    let mut conn = db.connect().unwrap();
    platform::db::revert_all(&mut conn, auth::MIGRATIONS).unwrap();
    platform::db::migrate(&mut conn, auth::MIGRATIONS, auth::MIGRATION_LOCK).unwrap();
}

#[test]
fn bus_tables_match_the_bus_crate() {
    testkit::checks::migration_includes_bus_tables(env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn signing_keys_match_the_signing_crate() {
    testkit::checks::migration_includes_signing_keys(env!("CARGO_MANIFEST_DIR"));
}

/// SIGTERM under load: every request that a kept-alive connection carries
/// to the server gets its answer (during the drain with `Connection:
/// close`, so the client moves off), readiness says draining, and the
/// binary exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_request_already_received_and_exits_zero() {
    use std::time::Duration;

    let db = fresh_database();
    let bus = testkit::TestBus::new();
    bus.track_topology(&auth::topology(vec![Duration::from_millis(50)]));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut child = auth_binary()
        .env("DATABASE_URL", db.url())
        .env("AMQP_PREFIX", bus.prefix())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("RETRY_DELAYS_MS", "50")
        .env("LOGIN_MAX_FAILURES", "1000")
        .env("LOGIN_IP_MAX_FAILURES", "100000")
        .env("SHUTDOWN_GRACE_SECS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/api/auth");
    let probe = reqwest::Client::new();
    let ready = testkit::eventually(Duration::from_secs(20), || async {
        let response = probe.get(format!("{base}/readyz")).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    assert!(ready.is_some(), "the binary did not become ready");

    // Each client keeps one connection alive and sends logins (an argon2id
    // hash each, so requests are in flight when the signal lands) until an
    // answer tells it to close the connection. A request that fails before
    // then was carried to the server and dropped.
    let mut clients = Vec::new();
    for n in 0..8 {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        client.get(format!("{base}/healthz")).send().await.unwrap();
        let url = format!("{base}/login");
        clients.push(tokio::spawn(async move {
            let mut answered = 0;
            loop {
                let outcome = client
                    .post(&url)
                    .json(&serde_json::json!({
                        "email": format!("nobody{n}@example.com"),
                        "password": "wrong password",
                    }))
                    .send()
                    .await;
                let response = match outcome {
                    Ok(response) => response,
                    Err(err) => return Err(format!("after {answered} answers: {err}")),
                };
                assert_eq!(response.status(), 401);
                answered += 1;
                let closing = response
                    .headers()
                    .get("connection")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                if closing {
                    return Ok(answered);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let draining = testkit::eventually(Duration::from_secs(1), || async {
        let response = probe.get(format!("{base}/readyz")).send().await.ok()?;
        (response.status() == 503).then_some(())
    })
    .await;
    assert!(
        draining.is_some(),
        "readiness did not turn 503 while draining"
    );
    for client in clients {
        let answered = client.await.unwrap();
        assert!(answered.is_ok(), "a request was dropped: {answered:?}");
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// `POST /visitors` takes no body at all, whatever Content-Type a client
/// library sends with nothing; a body it does send must be JSON.
#[tokio::test]
async fn a_visitor_needs_no_body() {
    let app = spawn_app().await;
    for content_type in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
    ] {
        let mut request = app.client.post(app.url("/visitors"));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 201, "{content_type:?}");
    }
    let form = app
        .client
        .post(app.url("/visitors"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("display_name=Eve")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(form).await.0, 415);
}

#[test]
fn the_committed_api_document_is_the_served_one() {
    testkit::checks::openapi_is_committed(
        env!("CARGO_BIN_EXE_auth"),
        env!("CARGO_MANIFEST_DIR"),
        "auth",
    );
}
