use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn login_answers_tokens_and_a_hardened_refresh_cookie() {
    let app = spawn_app_with(|config| config.cookie_secure = true).await;
    let email = unique_email();
    app.register(&email).await;
    let response = app.login_with(&new_client(), &email, PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/api/auth"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"]["email"], email);

    let header = jsonwebtoken::decode_header(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert!(header.kid.is_some());
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let (wrong_status, _, wrong) = problem(
        app.login_with(&new_client(), &email, "wrong password")
            .await,
    )
    .await;
    let (unknown_status, _, unknown) = problem(
        app.login_with(&new_client(), &unique_email(), "wrong password")
            .await,
    )
    .await;
    assert_eq!(wrong_status, 401);
    assert_eq!((wrong_status, &wrong), (unknown_status, &unknown));
}

#[tokio::test]
async fn login_validation_names_fields() {
    let app = spawn_app().await;
    let (status, _, body) =
        problem(app.post("/login", &json!({"email": "x@example.com"})).await).await;
    assert_eq!((status, fields(&body)), (422, vec!["password".to_string()]));
    let (status, _, body) = problem(
        app.post("/login", &json!({"email": "not-an-email", "password": "p"}))
            .await,
    )
    .await;
    assert_eq!((status, fields(&body)), (422, vec!["email".to_string()]));
}

async fn fail_logins(app: &TestApp, email: &str, times: usize) {
    for _ in 0..times {
        let response = app.login_with(&new_client(), email, "wrong password").await;
        assert_eq!(response.status(), 401);
    }
}

#[tokio::test]
async fn five_failures_throttle_known_and_unknown_accounts() {
    let app = spawn_app().await;
    let known = unique_email();
    app.register(&known).await;
    let unknown = unique_email();
    for email in [&known, &unknown] {
        fail_logins(&app, email, 5).await;
        let (status, headers, body) =
            problem(app.login_with(&new_client(), email, "wrong password").await).await;
        assert_eq!(status, 429, "{email}");
        assert_eq!(body["code"], "too_many_requests");
        let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry_after > 0 && retry_after <= 900);
    }
    // Even the right password waits out the window.
    let blocked = app.login_with(&new_client(), &known, PASSWORD).await;
    assert_eq!(blocked.status(), 429);
    // Another account from the same address is unaffected.
    let other = unique_email();
    app.register(&other).await;
    assert_eq!(
        app.login_with(&new_client(), &other, PASSWORD)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn success_resets_the_account_count_but_not_the_address_count() {
    let app = spawn_app_with(|config| config.login_ip_max_failures = 6).await;
    let email = unique_email();
    app.register(&email).await;
    fail_logins(&app, &email, 4).await;
    assert_eq!(
        app.login_with(&new_client(), &email, PASSWORD)
            .await
            .status(),
        200
    );
    // The account count restarted: four more failures are still allowed...
    fail_logins(&app, &email, 2).await;
    // ...but the address has now failed six times in the window.
    let (status, _, _) = problem(
        app.login_with(&new_client(), &unique_email(), "wrong password")
            .await,
    )
    .await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn throttle_window_expires() {
    let app = spawn_app_with(|config| config.login_throttle_window_secs = 1).await;
    let email = unique_email();
    app.register(&email).await;
    fail_logins(&app, &email, 5).await;
    assert_eq!(
        app.login_with(&new_client(), &email, PASSWORD)
            .await
            .status(),
        429
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.login_with(&new_client(), &email, PASSWORD)
            .await
            .status(),
        200
    );
}
