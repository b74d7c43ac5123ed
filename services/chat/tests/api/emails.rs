use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn offline_staff_are_emailed_about_a_waiting_room_once_per_ten_minutes() {
    let chat = start().await;
    let offline = chat.staff().await;
    let quiet = chat.staff().await;
    chat.call(
        Method::PUT,
        "/staff/me/settings",
        &quiet.token,
        Some(json!({"max_active_rooms": 3, "notify_by_email": false})),
    )
    .await;
    let room = chat.open_room(&chat.visitor()).await;
    assert_eq!(room["status"], "waiting");
    let job = chat
        .bus
        .take("email", Duration::from_secs(10))
        .await
        .expect("a chat_waiting job");
    let job = job.json();
    assert_eq!(job["data"]["template"], "chat_waiting");
    assert_eq!(job["data"]["to"], offline.email.clone().unwrap());
    assert_eq!(job["data"]["vars"]["room_id"], room["id"]);
    assert!(job["data"]["vars"]["display_name"].is_string());

    // Another waiting room within ten minutes: no second email.
    chat.open_room(&chat.visitor()).await;
    assert!(chat
        .bus
        .take("email", Duration::from_millis(1500))
        .await
        .is_none());
    assert_eq!(chat.n("SELECT count(*) FROM waiting_notices"), 1);

    // Online staff get the room, not an email.
    let _ws = chat.connect(0, &offline).await;
    chat.db
        .execute("UPDATE waiting_notices SET last_sent_at = now() - interval '11 minutes'");
    chat.settings(&offline, 10).await;
    let third = chat.open_room(&chat.visitor()).await;
    assert_eq!(third["status"], "active");
    assert!(chat
        .bus
        .take("email", Duration::from_millis(1000))
        .await
        .is_none());
}

#[tokio::test]
async fn closing_with_a_transcript_address_sends_the_transcript() {
    let chat = start().await;
    let visitor = chat.visitor();
    let room = id_of(&chat.open_room(&visitor).await);
    chat.post(&visitor, &room, "where is my parcel?").await;
    // Drop the chat_waiting notices: no staff has an email here anyway.
    let (status, closed) = chat
        .call(
            Method::POST,
            &format!("/rooms/{room}/close"),
            &visitor.token,
            Some(json!({"transcript_email": "me@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    let job = chat
        .bus
        .take("email", Duration::from_secs(10))
        .await
        .expect("a transcript job")
        .json();
    assert_eq!(job["data"]["template"], "chat_transcript");
    assert_eq!(job["data"]["to"], "me@example.com");
    let transcript = job["data"]["vars"]["transcript"].as_str().unwrap();
    assert!(
        transcript.contains("visitor: where is my parcel?"),
        "{transcript}"
    );
    assert_eq!(
        job["data"]["idempotency_key"],
        format!("chat_transcript:{room}")
    );
}
