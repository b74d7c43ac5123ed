use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn register_creates_user_emits_event_and_queues_verification_email() {
    let app = spawn_app().await;
    let mut events = app.bus.probe("events", "user.registered").await.unwrap();
    let email = unique_email();

    let body = app.register(&email.to_uppercase()).await;
    let user = &body["user"];
    assert_eq!(user["email"], email, "email is normalised");
    assert_eq!(user["display_name"], "Test User");
    assert_eq!(user["roles"], json!(["user"]));
    assert_eq!(user["email_verified"], false);
    assert!(user["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    assert!(user.get("password_hash").is_none());

    let event = events
        .next(Duration::from_secs(10))
        .await
        .expect("user.registered");
    assert_eq!(event.message_type, "user.registered");
    let envelope = event.json();
    assert_eq!(envelope["id"].as_str().unwrap(), event.message_id);
    assert_eq!(envelope["version"], 1);
    assert_eq!(envelope["data"]["user_id"], user["id"]);
    assert_eq!(envelope["data"]["email"], email);
    assert_eq!(envelope["data"]["kind"], "registered");
    assert!(
        event.headers.0.contains_key("traceparent"),
        "trace context travels with the event"
    );

    let job = app.email_job(&email).await;
    assert_eq!(job["type"], "email");
    assert_eq!(job["data"]["template"], "verify_email");
    assert_eq!(job["data"]["vars"]["display_name"], "Test User");
    assert_eq!(job["data"]["vars"]["token"].as_str().unwrap().len(), 43);
    assert!(!job["data"]["idempotency_key"].as_str().unwrap().is_empty());

    let stored =
        app.count("SELECT count(*) AS n FROM users WHERE password_hash LIKE '$argon2id$%'");
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn invalid_registrations_name_every_field_and_change_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"email": "nope", "password": "short", "display_name": ""}),
            vec!["email", "password", "display_name"],
        ),
        (
            json!({"email": unique_email(), "password": "x".repeat(129), "display_name": "A"}),
            vec!["password"],
        ),
        (
            json!({"email": unique_email(), "password": PASSWORD}),
            vec!["display_name"],
        ),
        (
            json!({"email": unique_email(), "password": PASSWORD, "display_name": "A", "roles": ["admin"]}),
            vec!["roles"],
        ),
        (
            json!({"email": 42, "password": PASSWORD, "display_name": "A"}),
            vec!["email"],
        ),
        (
            json!({"email": unique_email(), "password": PASSWORD, "display_name": "Ada\u{202E}nimda"}),
            vec!["display_name"],
        ),
        (
            json!({"email": unique_email(), "password": PASSWORD, "display_name": "Ad\u{200B}a"}),
            vec!["display_name"],
        ),
    ];
    for (body, expected) in cases {
        let (status, _, problem) = problem(app.post("/register", &body).await).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(fields(&problem), expected, "{body}");
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM users"), 0);
    assert_eq!(app.count("SELECT count(*) AS n FROM outbox"), 0);
}

#[tokio::test]
async fn duplicate_email_is_a_conflict_and_publishes_nothing() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    app.outbox_drained().await;
    let mut events = app.bus.probe("events", "user.registered").await.unwrap();

    let response = app
        .post(
            "/register",
            &json!({"email": email, "password": PASSWORD, "display_name": "Again"}),
        )
        .await;
    let (status, _, body) = problem(response).await;
    assert_eq!(status, 409);
    assert_eq!(fields(&body), vec!["email"]);
    assert_eq!(app.count("SELECT count(*) AS n FROM users"), 1);
    // The rolled-back transaction wrote no outbox rows, so nothing goes out.
    assert_eq!(app.count("SELECT count(*) AS n FROM outbox"), 2);
    assert!(events.next(Duration::from_millis(700)).await.is_none());
}

#[tokio::test]
async fn visitors_get_a_session_without_an_email() {
    let app = spawn_app().await;
    let client = new_client();
    let response = client.post(app.url("/visitors")).send().await.unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("refresh_token="));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["user"]["roles"], json!(["visitor"]));
    assert_eq!(body["user"]["email"], serde_json::Value::Null);
    assert_eq!(body["token_type"], "Bearer");

    let named = app
        .post_with(&client, "/visitors", &json!({"display_name": "Grace"}))
        .await;
    let body: serde_json::Value = named.json().await.unwrap();
    assert_eq!(body["user"]["display_name"], "Grace");

    let (status, _, problem) =
        problem(app.post("/visitors", &json!({"display_name": "  "})).await).await;
    assert_eq!(status, 422);
    assert_eq!(fields(&problem), vec!["display_name"]);

    let refreshed = app.refresh_with(&client).await;
    assert_eq!(refreshed.status(), 200, "a visitor's session refreshes");
}
