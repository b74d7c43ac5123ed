use crate::helpers::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

fn status_of(page: &serde_json::Value, staff: &Person) -> String {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["staff_id"] == staff.id.to_string())
        .map(|item| item["status"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The next presence frame about `staff`, within 10 s.
async fn presence_of(ws: &mut testkit::ws::WsClient, staff: &Person) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.receive(left).await {
            testkit::ws::Received::Frame(frame)
                if frame["type"] == "presence" && frame["staff_id"] == staff.id.to_string() =>
            {
                return frame
            }
            testkit::ws::Received::Frame(_) => continue,
            other => panic!("no presence frame about {}: {other:?}", staff.id),
        }
    }
}

#[tokio::test]
async fn staff_are_online_while_connected_counting_tabs_and_offline_after_the_grace() {
    let chat = start().await;
    let watcher = chat.staff().await;
    let sam = chat.staff().await;
    let mut watching = chat.connect(0, &watcher).await;
    let (_, page) = chat
        .call(Method::GET, "/presence", &watcher.token, None)
        .await;
    assert_eq!(status_of(&page, &sam), "offline");

    let tab_one = chat.connect(0, &sam).await;
    let online = presence_of(&mut watching, &sam).await;
    assert_eq!(
        online,
        json!({"type": "presence", "staff_id": sam.id, "status": "online"})
    );
    let (_, page) = chat
        .call(Method::GET, "/presence", &watcher.token, None)
        .await;
    assert_eq!(status_of(&page, &sam), "online");

    let tab_two = chat.connect(0, &sam).await;
    tab_one.close().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(chat.is_online(&sam), "one tab still open");

    tab_two.close().await;
    let offline = presence_of(&mut watching, &sam).await;
    assert_eq!(offline["status"], "offline");
    assert!(!chat.is_online(&sam));
}

#[tokio::test]
async fn a_reload_within_the_grace_is_not_a_goodbye() {
    let chat = start_with(1, |config| {
        quick(config);
        config.presence_grace_secs = 3;
    })
    .await;
    let sam = chat.staff().await;
    let first = chat.connect(0, &sam).await;
    first.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _second = chat.connect(0, &sam).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(chat.is_online(&sam));
}

#[tokio::test]
async fn a_dead_replicas_connections_expire_and_their_staff_go_offline() {
    let chat = start().await;
    let sam = chat.staff().await;
    // What a replica that died without a word leaves behind.
    let dead = uuid::Uuid::new_v4();
    chat.db.execute(&format!(
        "INSERT INTO replicas (id, heartbeat_at) VALUES ('{dead}', now())"
    ));
    chat.db.execute(&format!(
        "INSERT INTO connections (id, replica_id, user_id) VALUES ('{}', '{dead}', '{}')",
        uuid::Uuid::now_v7(),
        sam.id
    ));
    chat.db.execute(&format!(
        "UPDATE agents SET online = TRUE, last_seen_at = now() WHERE user_id = '{}'",
        sam.id
    ));
    let watcher = chat.staff().await;
    let mut watching = chat.connect(0, &watcher).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(chat.is_online(&sam), "not before the expiry (5 s)");
    let offline = presence_of(&mut watching, &sam).await;
    assert_eq!(
        offline,
        json!({"type": "presence", "staff_id": sam.id, "status": "offline"})
    );
    assert_eq!(
        chat.n(&format!(
            "SELECT count(*) FROM replicas WHERE id = '{dead}'"
        )),
        0
    );
    assert!(chat.is_online(&watcher), "the live replica's staff stay");
}
