//! Test support shared by every service's integration tests: a fresh
//! PostgreSQL database per test cloned from a migrated template, AMQP names
//! of its own per test, and a TCP proxy that can cut a connection to simulate
//! an outage. Everything talks to real servers.

pub mod amqp;
pub mod checks;
pub mod database;
pub mod proxy;
pub mod smtp;
pub mod tokens;
pub mod ws;

pub use amqp::TestBus;
pub use database::TestDatabase;
pub use proxy::TcpProxy;
pub use smtp::SmtpSink;
pub use tokens::TestIssuer;

/// PostgreSQL server used by tests (`TEST_DATABASE_URL`, without a database
/// name; default the local server).
pub fn postgres_server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

/// RabbitMQ used by tests (`TEST_AMQP_URL`, default the local broker).
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

/// Sends `method url` with a bearer token and an optional JSON body, as an
/// API client does; panics if the request cannot be sent.
pub async fn send_with_token(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> reqwest::Response {
    let mut request = client.request(method.clone(), url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(response) => response,
        Err(err) => panic!("{method} {url}: {err:?}"),
    }
}

/// Waits until `url` (a `readyz`) answers 2xx, at most 20 s; panics if it
/// never does.
pub async fn wait_until_ready(client: &reqwest::Client, url: &str) {
    let ready = eventually(std::time::Duration::from_secs(20), || async {
        let response = client.get(url).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    assert!(ready.is_some(), "{url} never became ready");
}

/// Polls `check` every 25 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
