//! The accounts database going away, as a client sees it: an outage is a
//! quick 503 with `Retry-After` (never a 404 or a hang), a connection
//! dropped mid-request is a 503, an unexpected failure an opaque 500, and
//! the service recovers by itself.

use crate::helpers::*;
use diesel::connection::SimpleConnection;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::TcpProxy;

/// auth and accounts, accounts reaching its database through `proxy`.
async fn behind_proxy() -> (Platform, TcpProxy) {
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap())
        .await
        .unwrap();
    let platform = spawn_with(|config| {
        use secrecy::ExposeSecret;
        let url = proxy.route(config.database_url.expose_secret(), "127.0.0.1:5432");
        config.database_url = secrecy::SecretString::from(url);
    })
    .await;
    (platform, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_a_quick_503_never_a_404_and_heals_by_itself() {
    let (platform, proxy) = behind_proxy().await;
    let admin = platform.admin().await;
    let user = platform.user().await;

    proxy.cut();
    let requests = [
        (Method::GET, "/me".to_string(), &user.token, None),
        (
            Method::GET,
            format!("/users/{}", user.id),
            &admin.token,
            None,
        ),
        (Method::GET, "/users?q=user".to_string(), &admin.token, None),
        (
            Method::PATCH,
            "/me".to_string(),
            &user.token,
            Some(json!({"display_name": "Renamed"})),
        ),
        (
            Method::POST,
            format!("/users/{}/disable", user.id),
            &admin.token,
            None,
        ),
    ];
    for (method, path, token, body) in requests {
        let started = Instant::now();
        let response = platform.call(method.clone(), &path, token, body).await;
        let took = started.elapsed();
        testkit::checks::assert_unavailable(response, &format!("{method} {path}")).await;
        assert!(
            took < Duration::from_millis(2500),
            "{method} {path} took {took:?} to fail"
        );
    }
    let ready = platform
        .client
        .get(platform.accounts("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let checks: serde_json::Value = ready.json().await.unwrap();
    assert_ne!(checks["checks"]["database"], "ok", "{checks}");
    assert_eq!(checks["checks"]["broker"], "ok", "{checks}");

    proxy.restore();
    let healed = testkit::eventually(Duration::from_secs(10), || async {
        let response = platform.get("/me", &user.token).await;
        (response.status() == 200).then_some(())
    })
    .await;
    assert!(healed.is_some(), "GET /me did not recover");
    // Nothing the outage refused was applied.
    assert_eq!(
        platform.count(&format!(
            "SELECT count(*) AS n FROM profiles WHERE id = '{}' AND status = 'active' \
             AND display_name = 'Test User'",
            user.id
        )),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_request_is_a_503() {
    let (platform, proxy) = behind_proxy().await;
    let user = platform.user().await;
    // Hold the profile's row, so the update waits inside the database.
    let mut holder = platform.db.connect().unwrap();
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM profiles WHERE id = '{}' FOR UPDATE",
            user.id
        ))
        .unwrap();
    let update = {
        let client = platform.client.clone();
        let url = platform.accounts("/me");
        let token = user.token.clone();
        tokio::spawn(async move {
            client
                .patch(url)
                .bearer_auth(token)
                .json(&json!({"display_name": "Renamed"}))
                .send()
                .await
                .unwrap()
        })
    };
    let waiting = testkit::eventually(Duration::from_secs(5), || async {
        (platform.count(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query LIKE '%profiles%'",
        ) > 0)
            .then_some(())
    })
    .await;
    assert!(waiting.is_some(), "the update never reached the lock");
    proxy.cut();
    testkit::checks::assert_unavailable(update.await.unwrap(), "PATCH /me").await;
    holder.batch_execute("ROLLBACK").unwrap();
    proxy.restore();
    // The update was rolled back with its connection.
    assert_eq!(
        platform.count(&format!(
            "SELECT count(*) AS n FROM profiles WHERE id = '{}' AND display_name = 'Renamed'",
            user.id
        )),
        0
    );
}

#[tokio::test]
async fn an_unexpected_failure_is_an_opaque_500() {
    let platform = spawn().await;
    let user = platform.user().await;
    platform.execute("ALTER TABLE profiles RENAME COLUMN locale TO locale_moved");
    let (status, body) = problem(platform.get("/me", &user.token).await).await;
    platform.execute("ALTER TABLE profiles RENAME COLUMN locale_moved TO locale");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "internal");
    let text = body.to_string();
    assert!(
        !text.contains("locale") && !text.contains("column"),
        "the cause leaked: {text}"
    );
}
