use crate::helpers::*;
use domain::messages::{AccountDisabled, AccountEnabled, AccountRolesChanged, Envelope};
use domain::Role;
use std::time::Duration;
use uuid::Uuid;

async fn processed(app: &TestApp, count: i64) {
    let done = testkit::eventually(Duration::from_secs(10), || async {
        (app.count("SELECT count(*) AS n FROM processed_messages") >= count).then_some(())
    })
    .await;
    assert!(done.is_some(), "auth did not process {count} events");
}

fn roles_of(body: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(body["user"]["roles"].clone()).unwrap()
}

#[tokio::test]
async fn a_roles_change_reaches_the_next_refresh_and_stale_changes_lose() {
    let app = spawn_app().await;
    let (device, _, user_id) = app.signed_in_user(&unique_email()).await;
    let user_id: Uuid = user_id.parse().unwrap();

    app.bus
        .publish(&Envelope::new(AccountRolesChanged {
            user_id,
            roles: vec![Role::User, Role::Admin],
            revision: 5,
        }))
        .await
        .unwrap();
    app.bus
        .publish(&Envelope::new(AccountRolesChanged {
            user_id,
            roles: vec![Role::User],
            revision: 3,
        }))
        .await
        .unwrap();
    processed(&app, 2).await;

    let body: serde_json::Value = app.refresh_with(&device).await.json().await.unwrap();
    assert_eq!(roles_of(&body), vec!["user", "admin"]);
    let token = body["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["roles"], serde_json::json!(["user", "admin"]));
}

#[tokio::test]
async fn disabling_revokes_every_session_and_enabling_restores_login() {
    let app = spawn_app().await;
    let email = unique_email();
    let (laptop, _, user_id) = app.signed_in_user(&email).await;
    let phone = new_client();
    app.login_with(&phone, &email, PASSWORD).await;
    let user_id: Uuid = user_id.parse().unwrap();

    let disabled = Envelope::new(AccountDisabled {
        user_id,
        revision: 1,
    });
    app.bus.publish(&disabled).await.unwrap();
    processed(&app, 1).await;
    assert_eq!(app.refresh_with(&laptop).await.status(), 401);
    assert_eq!(app.refresh_with(&phone).await.status(), 401);
    let (status, _, body) = problem(app.login_with(&new_client(), &email, PASSWORD).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("account_disabled"))
    );

    app.bus
        .publish(&Envelope::new(AccountEnabled {
            user_id,
            revision: 2,
        }))
        .await
        .unwrap();
    processed(&app, 2).await;
    let tablet = new_client();
    assert_eq!(
        app.login_with(&tablet, &email, PASSWORD).await.status(),
        200
    );

    // The same disable delivered again is recognised and has no effect.
    app.bus.publish(&disabled).await.unwrap();
    app.bus
        .publish(&Envelope::new(AccountRolesChanged {
            user_id,
            roles: vec![Role::User],
            revision: 3,
        }))
        .await
        .unwrap();
    processed(&app, 3).await;
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM processed_messages WHERE message_id = '{}'",
            disabled.id
        )),
        1
    );
    assert_eq!(
        app.refresh_with(&tablet).await.status(),
        200,
        "the redelivered disable did nothing"
    );
}

#[tokio::test]
async fn malformed_events_are_dead_lettered_without_blocking_the_queue() {
    let app = spawn_app().await;
    let (device, _, user_id) = app.signed_in_user(&unique_email()).await;
    app.bus
        .publish_raw(
            "events",
            "account.disabled",
            &Uuid::new_v4().to_string(),
            "account.disabled",
            b"{not json".to_vec(),
        )
        .await
        .unwrap();
    let mut unknown_version = serde_json::to_value(Envelope::new(AccountDisabled {
        user_id: user_id.parse().unwrap(),
        revision: 9,
    }))
    .unwrap();
    unknown_version["version"] = serde_json::json!(99);
    app.bus
        .publish_raw(
            "events",
            "account.disabled",
            &Uuid::new_v4().to_string(),
            "account.disabled",
            serde_json::to_vec(&unknown_version).unwrap(),
        )
        .await
        .unwrap();

    let first = app
        .bus
        .take("auth.events.dead", Duration::from_secs(10))
        .await
        .expect("dead letter");
    let reason = first.headers.0.get("x-error").cloned().unwrap_or_default();
    assert!(reason.contains("malformed"), "{reason}");
    assert_eq!(
        first
            .headers
            .0
            .get("x-original-queue")
            .map(|q| q.ends_with("auth.events")),
        Some(true)
    );
    let second = app
        .bus
        .take("auth.events.dead", Duration::from_secs(10))
        .await
        .expect("dead letter");
    assert!(second
        .headers
        .0
        .get("x-error")
        .unwrap()
        .contains("unsupported version"));

    app.bus
        .publish(&Envelope::new(AccountRolesChanged {
            user_id: user_id.parse().unwrap(),
            roles: vec![Role::User, Role::Staff],
            revision: 1,
        }))
        .await
        .unwrap();
    processed(&app, 1).await;
    let body: serde_json::Value = app.refresh_with(&device).await.json().await.unwrap();
    assert_eq!(roles_of(&body), vec!["user", "staff"]);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM sessions WHERE revoked_at IS NOT NULL"),
        0
    );
}
