use crate::helpers::*;
use reqwest::header::{COOKIE, ORIGIN};
use std::time::Duration;

fn cookie_value(response: &reqwest::Response) -> String {
    let header = response.headers()["set-cookie"].to_str().unwrap();
    header
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("refresh_token=")
        .to_string()
}

async fn refresh_raw(app: &TestApp, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/refresh"))
        .header(COOKIE, format!("refresh_token={token}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn refresh_rotates_the_cookie_and_issues_a_new_access_token() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let first = app.login_with(&new_client(), &email, PASSWORD).await;
    let original = cookie_value(&first);

    let rotated = refresh_raw(&app, &original).await;
    assert_eq!(rotated.status(), 200);
    assert_eq!(rotated.headers()["cache-control"], "no-store");
    let next = cookie_value(&rotated);
    assert_ne!(next, original);
    let body: serde_json::Value = rotated.json().await.unwrap();
    let sessions = app
        .get_authorized("/sessions", body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(sessions.status(), 200);

    assert_eq!(
        refresh_raw(&app, &next).await.status(),
        200,
        "the new token works once"
    );
}

#[tokio::test]
async fn reusing_a_rotated_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let login = app.login_with(&new_client(), &email, PASSWORD).await;
    let stolen = cookie_value(&login);
    let access: serde_json::Value = login.json().await.unwrap();
    let rotated = refresh_raw(&app, &stolen).await;
    let newest = cookie_value(&rotated);

    let (status, headers, body) = problem(refresh_raw(&app, &stolen).await).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "invalid_refresh_token");
    assert!(headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));

    assert_eq!(
        refresh_raw(&app, &newest).await.status(),
        401,
        "the newest token stops working too"
    );
    let sessions = app
        .get_authorized("/sessions", access["access_token"].as_str().unwrap())
        .await;
    assert_eq!(sessions.status(), 401, "the session is gone");
}

#[tokio::test]
async fn of_concurrent_refreshes_exactly_one_succeeds() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let token = cookie_value(&app.login_with(&new_client(), &email, PASSWORD).await);
    let attempts = (0..8).map(|_| refresh_raw(&app, &token));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn refresh_and_logout_refuse_cross_site_requests() {
    let app =
        spawn_app_with(|config| config.allowed_origins = "https://app.example.com".into()).await;
    let email = unique_email();
    app.register(&email).await;
    let token = cookie_value(&app.login_with(&new_client(), &email, PASSWORD).await);
    for path in ["/refresh", "/logout"] {
        let response = reqwest::Client::new()
            .post(app.url(path))
            .header(COOKIE, format!("refresh_token={token}"))
            .header(ORIGIN, "https://evil.example.net")
            .send()
            .await
            .unwrap();
        assert_eq!(problem(response).await.0, 403, "{path}");
    }
    let same_site = reqwest::Client::new()
        .post(app.url("/refresh"))
        .header(COOKIE, format!("refresh_token={token}"))
        .header(ORIGIN, "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), 200, "an allowed origin may refresh");
}

#[tokio::test]
async fn missing_or_unknown_refresh_tokens_are_refused() {
    let app = spawn_app().await;
    let (status, _, _) = problem(
        reqwest::Client::new()
            .post(app.url("/refresh"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(problem(refresh_raw(&app, "forged").await).await.0, 401);
}

#[tokio::test]
async fn sessions_end_after_the_idle_limit() {
    let app = spawn_app_with(|config| config.session_idle_timeout_secs = 1).await;
    let email = unique_email();
    app.register(&email).await;
    let token = cookie_value(&app.login_with(&new_client(), &email, PASSWORD).await);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(refresh_raw(&app, &token).await.status(), 401);
}

#[tokio::test]
async fn sessions_end_after_the_absolute_limit_even_when_used() {
    let app = spawn_app_with(|config| {
        config.session_absolute_timeout_secs = 2;
        config.session_idle_timeout_secs = 60;
    })
    .await;
    let email = unique_email();
    app.register(&email).await;
    let mut token = cookie_value(&app.login_with(&new_client(), &email, PASSWORD).await);
    // Keep it busy: each refresh resets the idle clock, not the absolute one.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let response = refresh_raw(&app, &token).await;
        assert_eq!(response.status(), 200);
        token = cookie_value(&response);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(refresh_raw(&app, &token).await.status(), 401);
}
