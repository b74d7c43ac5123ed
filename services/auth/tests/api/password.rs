use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn changing_the_password_keeps_this_session_and_ends_the_others() {
    let app = spawn_app().await;
    let email = unique_email();
    let (this_device, access, _) = app.signed_in_user(&email).await;
    let other_device = new_client();
    app.login_with(&other_device, &email, PASSWORD).await;

    let wrong = app
        .client
        .post(app.url("/password"))
        .bearer_auth(&access)
        .json(&json!({"current_password": "not it at all", "new_password": "a brand new one"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = problem(wrong).await;
    assert_eq!(
        (status, fields(&body)),
        (422, vec!["current_password".to_string()])
    );

    let weak = app
        .client
        .post(app.url("/password"))
        .bearer_auth(&access)
        .json(&json!({"current_password": PASSWORD, "new_password": "short"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = problem(weak).await;
    assert_eq!(
        (status, fields(&body)),
        (422, vec!["new_password".to_string()])
    );

    let changed = app
        .client
        .post(app.url("/password"))
        .bearer_auth(&access)
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 204);
    assert_eq!(app.refresh_with(&other_device).await.status(), 401);
    assert_eq!(app.refresh_with(&this_device).await.status(), 200);
    assert_eq!(
        app.login_with(&new_client(), &email, PASSWORD)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.login_with(&new_client(), &email, "a brand new one")
            .await
            .status(),
        200
    );

    let anonymous = app
        .post(
            "/password",
            &json!({"current_password": "x", "new_password": "y"}),
        )
        .await;
    assert_eq!(problem(anonymous).await.0, 401);
}

#[tokio::test]
async fn forgot_always_accepts_and_queues_a_reset_only_for_real_accounts() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    app.email_job(&email).await; // the verification email

    let known = app.post("/password/forgot", &json!({"email": email})).await;
    let unknown = app
        .post("/password/forgot", &json!({"email": unique_email()}))
        .await;
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap());

    let job = app.email_job(&email).await;
    assert_eq!(job["data"]["template"], "password_reset");
    assert!(
        app.bus
            .take("email", Duration::from_millis(500))
            .await
            .is_none(),
        "nothing for the unknown email"
    );

    let (status, _, body) = problem(
        app.post("/password/forgot", &json!({"email": "nope"}))
            .await,
    )
    .await;
    assert_eq!((status, fields(&body)), (422, vec!["email".to_string()]));
}

#[tokio::test]
async fn a_reset_token_sets_the_password_once_and_ends_every_session() {
    let app = spawn_app().await;
    let email = unique_email();
    let (device, _, _) = app.signed_in_user(&email).await;
    app.email_job(&email).await;
    app.post("/password/forgot", &json!({"email": email})).await;
    let token = app.email_job(&email).await["data"]["vars"]["token"]
        .as_str()
        .unwrap()
        .to_string();

    let weak = app
        .post(
            "/password/reset",
            &json!({"token": token, "new_password": "short"}),
        )
        .await;
    assert_eq!(fields(&problem(weak).await.2), vec!["new_password"]);

    let reset = app
        .post(
            "/password/reset",
            &json!({"token": token, "new_password": "reset and ready"}),
        )
        .await;
    assert_eq!(reset.status(), 204);
    assert_eq!(
        app.refresh_with(&device).await.status(),
        401,
        "sessions were revoked"
    );
    assert_eq!(
        app.login_with(&new_client(), &email, "reset and ready")
            .await
            .status(),
        200
    );

    let again = app
        .post(
            "/password/reset",
            &json!({"token": token, "new_password": "another password"}),
        )
        .await;
    let (status, _, body) = problem(again).await;
    assert_eq!((status, fields(&body)), (422, vec!["token".to_string()]));
    assert_eq!(
        app.login_with(&new_client(), &email, "reset and ready")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn reset_tokens_expire_after_an_hour() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    app.email_job(&email).await;
    app.post("/password/forgot", &json!({"email": email})).await;
    let token = app.email_job(&email).await["data"]["vars"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Issued for one hour, give or take the moments this test took.
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM one_time_tokens WHERE purpose = 'password_reset' \
             AND expires_at BETWEEN created_at + interval '59 minutes' AND created_at + interval '61 minutes'"
        ),
        1,
        "the reset token does not live one hour"
    );
    // An hour later it is refused.
    app.execute("UPDATE one_time_tokens SET created_at = created_at - interval '1 hour', expires_at = expires_at - interval '1 hour' WHERE purpose = 'password_reset'");
    let late = app
        .post(
            "/password/reset",
            &json!({"token": token, "new_password": "too late now"}),
        )
        .await;
    let (status, _, body) = problem(late).await;
    assert_eq!((status, fields(&body)), (422, vec!["token".to_string()]));
    assert_eq!(
        app.login_with(&new_client(), &email, PASSWORD)
            .await
            .status(),
        200,
        "the late reset changed the password"
    );
}

#[tokio::test]
async fn verifying_the_email_emits_an_event_once() {
    let app = spawn_app().await;
    let mut events = app
        .bus
        .probe("events", "user.email_verified")
        .await
        .unwrap();
    let email = unique_email();
    let user = app.register(&email).await;
    let token = app.email_job(&email).await["data"]["vars"]["token"]
        .as_str()
        .unwrap()
        .to_string();

    let verified = app.post("/verify-email", &json!({"token": token})).await;
    assert_eq!(verified.status(), 204);
    let event = events
        .next(Duration::from_secs(10))
        .await
        .expect("user.email_verified");
    assert_eq!(event.json()["data"]["user_id"], user["user"]["id"]);

    let again = app.post("/verify-email", &json!({"token": token})).await;
    assert_eq!(fields(&problem(again).await.2), vec!["token"]);
    let login: serde_json::Value = app
        .login_with(&new_client(), &email, PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(login["user"]["email_verified"], true);
    assert!(events.next(Duration::from_millis(500)).await.is_none());
}
