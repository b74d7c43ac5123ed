use crate::helpers::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_user_reads_their_own_profile() {
    let platform = spawn().await;
    let person = platform.user().await;
    let response = platform.get("/me", &person.token).await;
    assert_eq!(response.status(), 200);
    let profile: serde_json::Value = response.json().await.unwrap();
    assert_eq!(profile["id"], person.id.as_str());
    assert_eq!(profile["email"], person.email.as_str());
    assert_eq!(profile["roles"], json!(["user"]));
    assert_eq!(profile["status"], "active");
    for field in [
        "display_name",
        "avatar_url",
        "locale",
        "timezone",
        "created_at",
        "updated_at",
    ] {
        assert!(profile.get(field).is_some(), "{field}");
    }
    let (status, _) = problem(
        platform
            .client
            .get(platform.accounts("/me"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = problem(platform.get("/me", "not.a.token").await).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn visitors_have_profiles_too() {
    let platform = spawn().await;
    let visitor = platform.visitor().await;
    let profile: serde_json::Value = platform
        .get("/me", &visitor.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["roles"], json!(["visitor"]));
    assert_eq!(profile["email"], serde_json::Value::Null);
}

#[tokio::test]
async fn patching_the_profile_validates_each_field_and_emits_an_event() {
    let platform = spawn().await;
    let person = platform.user().await;
    let mut events = platform
        .bus
        .probe("events", "account.profile_updated")
        .await
        .unwrap();

    let invalid = json!({"display_name": "", "avatar_url": "javascript:alert(1)", "locale": "english", "timezone": "Mars"});
    let (status, body) = problem(
        platform
            .call(Method::PATCH, "/me", &person.token, Some(invalid))
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        fields(&body),
        vec!["display_name", "avatar_url", "locale", "timezone"]
    );
    let (status, body) = problem(
        platform
            .call(
                Method::PATCH,
                "/me",
                &person.token,
                Some(json!({"roles": ["admin"]})),
            )
            .await,
    )
    .await;
    assert_eq!((status, fields(&body)), (422, vec!["roles".to_string()]));
    assert!(
        events.next(Duration::from_millis(300)).await.is_none(),
        "rejected changes emit nothing"
    );
    let unchanged: serde_json::Value = platform
        .get("/me", &person.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged["display_name"], "Test User");

    let change = json!({"display_name": "Ada L.", "avatar_url": "https://cdn.example.com/ada.png", "locale": "en-GB", "timezone": "Europe/London"});
    let response = platform
        .call(Method::PATCH, "/me", &person.token, Some(change))
        .await;
    assert_eq!(response.status(), 200);
    let profile: serde_json::Value = response.json().await.unwrap();
    assert_eq!(profile["display_name"], "Ada L.");
    assert_eq!(profile["timezone"], "Europe/London");
    let event = events
        .next(Duration::from_secs(10))
        .await
        .expect("account.profile_updated");
    assert_eq!(event.json()["data"]["user_id"], person.id.as_str());
    assert_eq!(event.json()["data"]["display_name"], "Ada L.");

    let cleared: serde_json::Value = platform
        .call(
            Method::PATCH,
            "/me",
            &person.token,
            Some(json!({"avatar_url": null})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["avatar_url"], serde_json::Value::Null);
    assert_eq!(
        cleared["locale"], "en-GB",
        "fields not named stay as they are"
    );
}
