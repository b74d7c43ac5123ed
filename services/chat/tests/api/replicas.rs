use crate::helpers::*;
use serde_json::json;
use std::time::Duration;
use testkit::ws::{Received, WsClient};

#[tokio::test]
async fn a_visitor_on_one_replica_and_staff_on_another_talk_live() {
    let chat = start_with(2, quick).await;
    let visitor = chat.visitor();
    let staff = chat.staff().await;
    let mut agent = chat.connect(1, &staff).await;
    let room = chat.open_room(&visitor).await;
    let room_id = id_of(&room);
    // The room frame of the assignment crossed replicas.
    let frame = agent.frame_of("room").await;
    assert_eq!(frame["room"]["id"], room["id"]);
    let mut guest = chat.connect(0, &visitor).await;
    guest
        .send(json!({"type": "subscribe", "room_id": room_id, "after_seq": 0}))
        .await;
    agent
        .send(json!({"type": "subscribe", "room_id": room_id, "after_seq": 0}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 1..=20 {
        let (ws, other) = if i % 2 == 0 {
            (&mut guest, "g")
        } else {
            (&mut agent, "a")
        };
        ws.send(json!({"type": "send", "room_id": room_id, "client_msg_id": format!("{other}{i}"), "body": format!("m{i}")})).await;
    }
    for ws in [&mut guest, &mut agent] {
        let mut seqs = Vec::new();
        while seqs.len() < 20 {
            let frame = ws.frame_of("message").await;
            seqs.push(frame["seq"].as_i64().unwrap());
        }
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "in order, once each");
        let rest = ws.drain(Duration::from_millis(300)).await;
        assert!(
            rest.iter().all(|f| f["type"] != "message"),
            "no duplicates: {rest:?}"
        );
    }
}

#[tokio::test]
async fn a_message_lost_on_the_way_is_fetched_when_the_next_one_shows_the_gap() {
    let chat = start_with(2, quick).await;
    let visitor = chat.visitor();
    let room = id_of(&chat.open_room(&visitor).await);
    let mut guest = chat.connect(1, &visitor).await;
    guest
        .send(json!({"type": "subscribe", "room_id": room}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Stored but never announced, as if the broker had dropped it.
    chat.db.execute(&format!(
        "WITH seq AS (UPDATE rooms SET last_seq = last_seq + 1 WHERE id = '{room}' RETURNING last_seq)
         INSERT INTO messages (room_id, seq, id, author_id, author_role, body, client_msg_id)
         SELECT '{room}', last_seq, gen_random_uuid(), '{}', 'visitor', 'lost', 'lost-1' FROM seq",
        visitor.id
    ));
    chat.post(&visitor, &room, "next").await;
    let first = guest.frame_of("message").await;
    let second = guest.frame_of("message").await;
    assert_eq!(
        (first["seq"].as_i64(), first["body"].as_str()),
        (Some(1), Some("lost"))
    );
    assert_eq!(
        (second["seq"].as_i64(), second["body"].as_str()),
        (Some(2), Some("next"))
    );
}

/// A replica told to stop (SIGTERM) or killed outright: its clients
/// resume on another replica from their last seq and see every message
/// exactly once.
async fn resume_after(kill: bool) {
    let chat = start_with(1, quick).await;
    let doomed = chat.spawn_process().await;
    let doomed_ws = doomed.url.replacen("http://", "ws://", 1) + "/api/chat/ws";
    let visitor = chat.visitor();
    let staff = chat.staff().await;
    let room = id_of(&chat.open_room(&visitor).await);
    let mut guest = WsClient::authed(&doomed_ws, &visitor.token).await;
    guest
        .send(json!({"type": "subscribe", "room_id": room, "after_seq": 0}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Staff keep writing through the surviving replica throughout.
    let writer = {
        let client = chat.client.clone();
        let url = chat.url(&format!("/rooms/{room}/messages"));
        let token = staff.token.clone();
        tokio::spawn(async move {
            for i in 1..=60 {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"body": format!("m{i}"), "client_msg_id": format!("s{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), reqwest::StatusCode::CREATED);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut seen: Vec<i64> = Vec::new();
    while seen.len() < 15 {
        seen.push(guest.frame_of("message").await["seq"].as_i64().unwrap());
    }
    if kill {
        doomed.kill().await;
    } else {
        let status = doomed.terminate().await;
        assert!(status.success(), "exit 0 after SIGTERM: {status}");
    }
    // Whatever was already on the wire is still read, then the end.
    loop {
        match guest.receive(Duration::from_secs(5)).await {
            Received::Frame(frame) if frame["type"] == "message" => {
                seen.push(frame["seq"].as_i64().unwrap())
            }
            Received::Frame(_) => {}
            Received::Closed(code, _) => {
                if !kill {
                    assert_eq!(code, Some(1001), "told to go elsewhere");
                }
                break;
            }
            Received::Nothing => panic!("the connection to a stopped replica stayed open"),
        }
    }
    let last = *seen.last().unwrap();
    let mut resumed = chat.connect(0, &visitor).await;
    resumed
        .send(json!({"type": "subscribe", "room_id": room, "after_seq": last}))
        .await;
    writer.await.unwrap();
    while seen.len() < 60 {
        seen.push(resumed.frame_of("message").await["seq"].as_i64().unwrap());
    }
    assert_eq!(
        seen,
        (1..=60).collect::<Vec<_>>(),
        "every message once, in order"
    );
    assert!(resumed
        .drain(Duration::from_millis(300))
        .await
        .iter()
        .all(|f| f["type"] != "message"));
}

#[tokio::test]
async fn clients_of_a_replica_stopped_by_sigterm_resume_elsewhere_exactly_once() {
    resume_after(false).await;
}

#[tokio::test]
async fn clients_of_a_killed_replica_resume_elsewhere_exactly_once() {
    resume_after(true).await;
}

#[tokio::test]
async fn after_a_broker_outage_a_replicas_clients_get_what_they_missed_once() {
    let mut chat = start_with(1, quick).await;
    let proxy = testkit::TcpProxy::start("127.0.0.1:5672".parse().unwrap())
        .await
        .unwrap();
    let amqp = proxy.route(&testkit::amqp_url(), "127.0.0.1:5672");
    let cut_off = chat
        .add_replica_with(|config| config.common.amqp_url = amqp.into())
        .await;
    let visitor = chat.visitor();
    let staff = chat.staff().await;
    let room = id_of(&chat.open_room(&visitor).await);
    let mut guest = chat.connect(cut_off, &visitor).await;
    guest
        .send(json!({"type": "subscribe", "room_id": room, "after_seq": 0}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let post = |i: i64| {
        let chat = &chat;
        let staff = &staff;
        let room = room.clone();
        async move { chat.post(staff, &room, &format!("m{i}")).await }
    };
    for i in 1..=3 {
        post(i).await;
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(guest.frame_of("message").await["seq"].as_i64().unwrap());
    }
    proxy.cut();
    let ready = chat.url_on(cut_off, "/readyz");
    let down = testkit::eventually(Duration::from_secs(10), || async {
        let response = chat.client.get(&ready).send().await.ok()?;
        (response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    assert!(down.is_some(), "the replica notices the broker is gone");
    for i in 4..=6 {
        post(i).await;
    }
    proxy.restore();
    // Without anything new being sent, the missed ones arrive.
    while seen.len() < 6 {
        seen.push(guest.frame_of("message").await["seq"].as_i64().unwrap());
    }
    post(7).await;
    seen.push(guest.frame_of("message").await["seq"].as_i64().unwrap());
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
    assert!(guest
        .drain(Duration::from_millis(300))
        .await
        .iter()
        .all(|f| f["type"] != "message"));
}
