//! The auth database going away, as a client sees it: a quick 503 with
//! `Retry-After`, never a 500, for reads and writes alike, including a
//! write whose connection the database drops mid-transaction.

use crate::helpers::*;
use diesel::connection::SimpleConnection;
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::TcpProxy;

async fn behind_proxy() -> (TestApp, TcpProxy) {
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap())
        .await
        .unwrap();
    let app = spawn_app_with(|config| {
        use secrecy::ExposeSecret;
        let url = proxy.route(config.database_url.expose_secret(), "127.0.0.1:5432");
        config.database_url = secrecy::SecretString::from(url);
    })
    .await;
    (app, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_a_quick_503_and_heals_by_itself() {
    let (app, proxy) = behind_proxy().await;
    let (_, token, _) = app.signed_in_user(&unique_email()).await;
    proxy.cut();
    let started = Instant::now();
    let register = app
        .post(
            "/register",
            &json!({"email": unique_email(), "password": PASSWORD, "display_name": "Ada"}),
        )
        .await;
    testkit::checks::assert_unavailable(register, "POST /register").await;
    let sessions = app.get_authorized("/sessions", &token).await;
    testkit::checks::assert_unavailable(sessions, "GET /sessions").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    proxy.restore();
    let healed = testkit::eventually(Duration::from_secs(10), || async {
        let response = app.get_authorized("/sessions", &token).await;
        (response.status() == 200).then_some(())
    })
    .await;
    assert!(healed.is_some(), "GET /sessions did not recover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_whose_connection_drops_is_a_503_and_leaves_nothing() {
    let (app, proxy) = behind_proxy().await;
    // Hold the users table, so the registration waits inside its transaction.
    let mut holder = app.db.connect().unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN EXCLUSIVE MODE")
        .unwrap();
    let email = unique_email();
    let register = {
        let client = app.client.clone();
        let url = app.url("/register");
        let body = json!({"email": email, "password": PASSWORD, "display_name": "Ada"});
        tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap() })
    };
    let waiting = testkit::eventually(Duration::from_secs(5), || async {
        (app.count(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query LIKE '%users%'",
        ) > 0)
            .then_some(())
    })
    .await;
    assert!(waiting.is_some(), "the registration never reached the lock");
    proxy.cut();
    testkit::checks::assert_unavailable(register.await.unwrap(), "POST /register").await;
    holder.batch_execute("ROLLBACK").unwrap();
    proxy.restore();
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM users WHERE email = '{email}'"
        )),
        0
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM outbox"), 0);
}
