use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use testkit::ws::WsClient;

/// The README's chat session with the real auth and accounts: a visitor's
/// token from auth opens a room; staff made so by an admin are known to
/// chat from the events, emailed while offline, and given the room when
/// they connect with the token auth issued.
#[tokio::test]
async fn a_visitor_from_auth_is_helped_by_staff_made_in_accounts() {
    let mut platform = spawn().await;
    let chat = platform.start_chat().await;
    let api = |path: &str| format!("{chat}/api/chat{path}");
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
    let chat_db = platform.chat_db.as_ref().unwrap();
    let known = testkit::eventually(Duration::from_secs(10), || async {
        (chat_db.count(&format!(
            "SELECT count(*) AS n FROM agents a JOIN people p USING (user_id) WHERE a.user_id = '{}' AND a.is_agent",
            staff.id
        )) == 1)
            .then_some(())
    })
    .await;
    assert!(
        known.is_some(),
        "chat learned of the new staff member from the events"
    );

    let visitor: Value = platform
        .client
        .post(platform.auth("/visitors"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let guest = visitor["access_token"].as_str().unwrap().to_string();
    let room: Value = testkit::send_with_token(
        &platform.client,
        Method::POST,
        &api("/rooms"),
        &guest,
        Some(json!({"subject": "Parcel"})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(room["status"], "waiting");
    // Both the admin and the new staff member are offline and want emails.
    let mut emailed = Vec::new();
    while let Some(job) = platform.take_email().await {
        if job["data"]["template"] == "chat_waiting" {
            emailed.push(job["data"]["to"].as_str().unwrap().to_string());
        }
        if emailed.len() == 2 {
            break;
        }
    }
    assert!(emailed.contains(&staff.email), "{emailed:?}");

    let mut ws = WsClient::authed(&api("/ws").replacen("http://", "ws://", 1), &staff.token).await;
    let frame = ws.frame_of("room").await;
    assert_eq!(frame["room"]["id"], room["id"]);
    assert_eq!(frame["room"]["assignee_id"], staff.id.as_str());
    ws.send(json!({"type": "subscribe", "room_id": room["id"]}))
        .await;
    ws.send(json!({"type": "ping"})).await;
    ws.frame_of("pong").await;
    let posted = testkit::send_with_token(
        &platform.client,
        Method::POST,
        &api(&format!("/rooms/{}/messages", room["id"].as_str().unwrap())),
        &guest,
        Some(json!({"body": "Hello?"})),
    )
    .await;
    assert_eq!(posted.status(), 201);
    let message = ws.frame_of("message").await;
    assert_eq!(
        (message["body"].as_str(), message["author_role"].as_str()),
        (Some("Hello?"), Some("visitor"))
    );
}
