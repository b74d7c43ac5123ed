//! The round trip between auth and accounts through RabbitMQ.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_registration_and_an_admin_appear_in_accounts() {
    let platform = spawn().await;
    let admin = platform.admin().await;
    let profile: serde_json::Value = platform
        .get("/me", &admin.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["roles"], json!(["user", "admin"]));
    let user = platform.user().await;
    let listed: serde_json::Value = platform
        .get(&format!("/users?q={}", user.email), &admin.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], user.id.as_str());
}

#[tokio::test]
async fn a_role_change_reaches_the_next_refresh() {
    let platform = spawn().await;
    let admin = platform.admin().await;
    let user = platform.user().await;
    let response = platform
        .call(
            Method::PUT,
            &format!("/users/{}/roles", user.id),
            &admin.token,
            Some(json!({"roles": ["user", "staff"]})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let staff = platform.refreshed_roles(&user, "staff").await;
    assert_eq!(
        platform
            .get(&format!("/users/{}", admin.id), &staff.token)
            .await
            .status(),
        200,
        "staff may now read profiles"
    );
}

#[tokio::test]
async fn disabling_ends_every_session_at_once_and_enabling_restores_login() {
    let platform = spawn().await;
    let admin = platform.admin().await;
    let user = platform.user().await;
    let second_device = platform.login(&user.email).await;

    let disable = platform
        .call(
            Method::POST,
            &format!("/users/{}/disable", user.id),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(disable.status(), 200);
    let revoked = testkit::eventually(Duration::from_secs(10), || async {
        let first = user
            .device
            .post(platform.auth("/refresh"))
            .send()
            .await
            .ok()?
            .status();
        (first == 401).then_some(())
    })
    .await;
    assert!(revoked.is_some(), "the disabled user's refresh still works");
    let other = second_device
        .device
        .post(platform.auth("/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        401,
        "every session was revoked, not just one"
    );
    let login = platform
        .client
        .post(platform.auth("/login"))
        .json(&json!({"email": user.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 403);

    platform
        .call(
            Method::POST,
            &format!("/users/{}/enable", user.id),
            &admin.token,
            None,
        )
        .await;
    let restored = testkit::eventually(Duration::from_secs(10), || async {
        let response = platform
            .client
            .post(platform.auth("/login"))
            .json(&json!({"email": user.email, "password": PASSWORD}))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    assert!(restored.is_some(), "login did not come back after enable");
}

#[tokio::test]
async fn an_admin_change_made_during_a_broker_outage_reaches_auth_afterwards() {
    let proxy = testkit::TcpProxy::start("127.0.0.1:5672".parse().unwrap())
        .await
        .unwrap();
    let port = proxy.port();
    let platform = spawn_with(|config| {
        config.common.amqp_url =
            secrecy::SecretString::from(format!("amqp://guest:guest@127.0.0.1:{port}/%2f"));
    })
    .await;
    let admin = platform.admin().await;
    let user = platform.user().await;

    proxy.cut();
    let response = platform
        .call(
            Method::PUT,
            &format!("/users/{}/roles", user.id),
            &admin.token,
            Some(json!({"roles": ["user", "staff"]})),
        )
        .await;
    assert_eq!(
        response.status(),
        200,
        "the change is accepted while the broker is away"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body: serde_json::Value = user
        .device
        .post(platform.auth("/refresh"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["user"]["roles"],
        json!(["user"]),
        "auth cannot know yet"
    );

    proxy.restore();
    let user = Person {
        token: body["access_token"].as_str().unwrap().to_string(),
        ..user
    };
    platform.refreshed_roles(&user, "staff").await;
}
