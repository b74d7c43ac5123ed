use crate::helpers::*;
use domain::claims::AccessClaims;
use domain::Role;
use serde_json::json;
use std::time::Duration;
use testkit::ws::{Received, WsClient};

#[tokio::test]
async fn auth_is_refused_for_missing_expired_tampered_and_foreign_tokens() {
    let chat = start().await;
    let visitor = chat.visitor();
    let now = chrono::Utc::now().timestamp();
    let expired = chat.issuer.sign(&AccessClaims {
        iss: chat.issuer.issuer().to_string(),
        aud: "platform".into(),
        sub: visitor.id.to_string(),
        roles: vec![Role::Visitor],
        sid: uuid::Uuid::now_v7().to_string(),
        iat: now - 3600,
        nbf: now - 3600,
        exp: now - 1800,
        jti: uuid::Uuid::new_v4().to_string(),
    });
    let mut tampered = visitor.token.clone();
    tampered.pop();
    tampered.push(if visitor.token.ends_with('A') {
        'B'
    } else {
        'A'
    });
    let foreign = testkit::TestIssuer::start(chat.issuer.issuer())
        .await
        .unwrap()
        .token(visitor.id, &[Role::Visitor]);
    for token in [
        "",
        "garbage",
        expired.as_str(),
        tampered.as_str(),
        foreign.as_str(),
    ] {
        let mut ws = WsClient::authed(&chat.ws_url(0), token).await;
        let error = ws.frame().await;
        assert_eq!(error["type"], "error", "{token}: {error}");
        assert_eq!(error["code"], "unauthorized");
        assert_eq!(ws.close_code().await, Some(4401), "{token}");
    }
    // A frame without a token at all.
    let mut ws = WsClient::connect(&chat.ws_url(0)).await;
    ws.send(json!({"type": "auth"})).await;
    assert_eq!(ws.close_code().await, Some(4401));
}

#[tokio::test]
async fn every_frame_before_auth_is_refused_and_nothing_happens() {
    let chat = start().await;
    let visitor = chat.visitor();
    let room = id_of(&chat.open_room(&visitor).await);
    for frame in [
        json!({"type": "ping"}),
        json!({"type": "subscribe", "room_id": room, "after_seq": 0}),
        json!({"type": "send", "room_id": room, "client_msg_id": "c1", "body": "hi"}),
        json!({"type": "typing", "room_id": room}),
        json!({"type": "read", "room_id": room, "seq": 0}),
        json!({"type": "unsubscribe", "room_id": room}),
        json!("not an object"),
    ] {
        let mut ws = WsClient::connect(&chat.ws_url(0)).await;
        ws.send(frame.clone()).await;
        let error = ws.frame().await;
        assert_eq!(
            (error["type"].as_str(), error["code"].as_str()),
            (Some("error"), Some("unauthorized")),
            "{frame}"
        );
        assert_eq!(ws.close_code().await, Some(4401), "{frame}");
    }
    let mut ws = WsClient::connect(&chat.ws_url(0)).await;
    ws.send_binary(vec![1, 2, 3]).await;
    assert_eq!(ws.close_code().await, Some(4401));
    assert_eq!(chat.n("SELECT count(*) FROM messages"), 0);
}

#[tokio::test]
async fn an_unauthenticated_connection_is_closed_after_the_auth_timeout() {
    let chat = start_with(1, |config| {
        quick(config);
        config.ws_auth_timeout_secs = 1;
    })
    .await;
    let mut ws = WsClient::connect(&chat.ws_url(0)).await;
    assert_eq!(ws.close_code().await, Some(4401));
}

#[tokio::test]
async fn subscribe_replays_then_streams_send_acks_and_typing_and_read_reach_the_room() {
    let chat = start().await;
    let visitor = chat.visitor();
    let staff = chat.staff().await;
    let room = id_of(&chat.open_room(&visitor).await);
    for i in 1..=3 {
        chat.post(&visitor, &room, &format!("before {i}")).await;
    }
    let mut agent = chat.connect(0, &staff).await;
    agent
        .send(json!({"type": "subscribe", "room_id": room, "after_seq": 1}))
        .await;
    let mut replayed = Vec::new();
    for _ in 0..2 {
        replayed.push(agent.frame_of("message").await["seq"].as_i64().unwrap());
    }
    assert_eq!(replayed, vec![2, 3]);

    let mut guest = chat.connect(0, &visitor).await;
    guest
        .send(json!({"type": "subscribe", "room_id": room}))
        .await;
    guest
        .send(json!({"type": "send", "room_id": room, "client_msg_id": "g-1", "body": "live one"}))
        .await;
    let ack = guest.frame_of("ack").await;
    assert_eq!(
        ack,
        json!({"type": "ack", "client_msg_id": "g-1", "seq": 4})
    );
    let live = agent.frame_of("message").await;
    assert_eq!(live["seq"], 4);
    assert_eq!(live["body"], "live one");
    assert_eq!(live["author_role"], "visitor");
    assert_eq!(live["author_id"], visitor.id.to_string());
    for field in ["id", "room_id", "created_at"] {
        assert!(live[field].is_string(), "{field} in {live}");
    }
    // The retry is acked with the first seq and not delivered again.
    guest
        .send(json!({"type": "send", "room_id": room, "client_msg_id": "g-1", "body": "live one"}))
        .await;
    assert_eq!(guest.frame_of("ack").await["seq"], 4);

    agent.send(json!({"type": "typing", "room_id": room})).await;
    let typing = guest.frame_of("typing").await;
    assert_eq!(
        typing,
        json!({"type": "typing", "room_id": room, "user_id": staff.id})
    );
    agent
        .send(json!({"type": "read", "room_id": room, "seq": 4}))
        .await;
    let read = guest.frame_of("read").await;
    assert_eq!(
        read,
        json!({"type": "read", "room_id": room, "user_id": staff.id, "seq": 4})
    );
    assert_eq!(chat.n("SELECT max(last_read_seq) FROM read_cursors"), 4);

    // Nothing arrived twice at the agent.
    let rest = agent.drain(Duration::from_millis(300)).await;
    assert!(rest.iter().all(|f| f["type"] != "message"), "{rest:?}");
    assert_eq!(chat.n("SELECT count(*) FROM messages"), 4);

    // Unsubscribed, the agent gets no more of the room.
    agent
        .send(json!({"type": "unsubscribe", "room_id": room}))
        .await;
    agent.send(json!({"type": "ping"})).await;
    agent.frame_of("pong").await;
    guest
        .send(json!({"type": "send", "room_id": room, "client_msg_id": "g-2", "body": "anyone?"}))
        .await;
    guest.frame_of("ack").await;
    let rest = agent.drain(Duration::from_millis(300)).await;
    assert!(rest.iter().all(|f| f["type"] != "message"), "{rest:?}");
}

#[tokio::test]
async fn refusals_are_error_frames_and_the_connection_goes_on() {
    let chat = start().await;
    let alice = chat.visitor();
    let bob = chat.visitor();
    let alices_room = id_of(&chat.open_room(&alice).await);
    chat.post(&alice, &alices_room, "private").await;
    let mut ws = chat.connect(0, &bob).await;
    let unknown = uuid::Uuid::now_v7();
    let cases = [
        (
            json!({"type": "subscribe", "room_id": alices_room, "after_seq": 0}),
            "not_found",
        ),
        (
            json!({"type": "subscribe", "room_id": unknown}),
            "not_found",
        ),
        (
            json!({"type": "send", "room_id": alices_room, "client_msg_id": "b1", "body": "hi"}),
            "not_found",
        ),
        (
            json!({"type": "typing", "room_id": alices_room}),
            "not_found",
        ),
        (
            json!({"type": "read", "room_id": alices_room, "seq": 1}),
            "not_found",
        ),
        (json!({"type": "subscribe", "room_id": "nope"}), "invalid"),
        (json!({"type": "dance"}), "invalid"),
        (
            json!({"type": "send", "room_id": alices_room, "client_msg_id": "b2", "body": ""}),
            "invalid",
        ),
        (
            json!({"type": "send", "room_id": alices_room, "client_msg_id": "b3", "body": "x".repeat(4001)}),
            "invalid",
        ),
        (
            json!({"type": "subscribe", "room_id": alices_room, "after_seq": -1}),
            "invalid",
        ),
    ];
    for (frame, code) in cases {
        ws.send(frame.clone()).await;
        let error = ws.frame().await;
        assert_eq!(
            (error["type"].as_str(), error["code"].as_str()),
            (Some("error"), Some(code)),
            "{frame}: {error}"
        );
        assert!(error["message"].is_string());
    }
    ws.send_text("{not json").await;
    assert_eq!(ws.frame().await["code"], "invalid");
    ws.send_binary(vec![0xff]).await;
    assert_eq!(ws.frame().await["code"], "invalid");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.frame().await, json!({"type": "pong"}));
    assert_eq!(
        chat.n("SELECT count(*) FROM messages"),
        1,
        "nothing was stored"
    );

    // A plain user may connect but sees no room.
    let user = chat.user();
    let mut ws = chat.connect(0, &user).await;
    ws.send(json!({"type": "subscribe", "room_id": alices_room}))
        .await;
    assert_eq!(ws.frame().await["code"], "forbidden");

    // A closed room takes no messages.
    let (status, _) = chat
        .call(
            reqwest::Method::POST,
            &format!("/rooms/{alices_room}/close"),
            &alice.token,
            None,
        )
        .await;
    assert!(status.is_success());
    let mut ws = chat.connect(0, &alice).await;
    ws.send(json!({"type": "send", "room_id": alices_room, "client_msg_id": "a9", "body": "late"}))
        .await;
    assert_eq!(ws.frame().await["code"], "room_closed");
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009_and_others_are_served() {
    let chat = start_with(1, |config| {
        quick(config);
        config.ws_max_frame_bytes = 2048;
    })
    .await;
    let visitor = chat.visitor();
    let mut big = chat.connect(0, &visitor).await;
    let mut other = chat.connect(0, &chat.visitor()).await;
    big.send_text(&format!(
        "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(4096)
    ))
    .await;
    assert_eq!(big.close_code().await, Some(1009));
    other.send(json!({"type": "ping"})).await;
    assert_eq!(other.frame().await["type"], "pong");
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_closed_and_others_are_served() {
    let chat = start_with(1, |config| {
        quick(config);
        config.ws_messages_per_sec = 5;
        config.ws_burst = 10;
    })
    .await;
    let visitor = chat.visitor();
    let room = id_of(&chat.open_room(&visitor).await);
    let mut flood = chat.connect(0, &visitor).await;
    let mut other = chat.connect(0, &chat.visitor()).await;
    for i in 0..200 {
        flood.send(json!({"type": "send", "room_id": room, "client_msg_id": format!("f{i}"), "body": "spam"})).await;
    }
    let mut limited = false;
    let code = loop {
        match flood.receive(Duration::from_secs(5)).await {
            Received::Frame(frame) if frame["code"] == "rate_limited" => limited = true,
            Received::Frame(_) => {}
            Received::Closed(code, _) => break code,
            Received::Nothing => panic!("the flood was neither refused nor closed"),
        }
    };
    assert!(limited, "an error frame said why");
    assert_eq!(code, Some(1008));
    let stored = chat.n("SELECT count(*) FROM messages");
    assert!(stored <= 12, "at most the burst got through: {stored}");
    other.send(json!({"type": "ping"})).await;
    assert_eq!(other.frame().await["type"], "pong");
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let chat = start_with(1, |config| {
        quick(config);
        config.ws_ping_secs = 1;
        config.ws_idle_timeout_secs = 2;
    })
    .await;
    // tungstenite answers pings only while it is read from; this client
    // reads (close_code) so pongs go back... and still sends nothing of
    // its own, so it is idle only if pongs do not count. They do: it
    // stays. A raw TCP client that never answers is what goes.
    let mut alive = chat.connect(0, &chat.visitor()).await;
    let mut silent =
        tokio::net::TcpStream::connect(chat.replicas[0].url.trim_start_matches("http://"))
            .await
            .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    silent
        .write_all(b"GET /api/chat/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let started = std::time::Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the silent connection was never closed"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // (The silent one was unauthenticated; the auth timeout is 10 s, so
    // the idle timeout closed it.)
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "closed by the idle timeout"
    );
    // Reading answers the server's pings (tungstenite does it), and that
    // is all this client does for three idle timeouts.
    let frames = alive.drain(Duration::from_secs(6)).await;
    assert!(frames.is_empty(), "{frames:?}");
    alive.send(json!({"type": "ping"})).await;
    assert_eq!(
        alive.frame_of("pong").await["type"],
        "pong",
        "a client that answers pings stays"
    );
}

#[tokio::test]
async fn a_slow_reader_is_disconnected_not_buffered() {
    let chat = start_with(1, |config| {
        quick(config);
        config.ws_send_queue = 4;
    })
    .await;
    let visitor = chat.visitor();
    let room = id_of(&chat.open_room(&visitor).await);
    let staff = chat.staff().await;
    // The slow one subscribes and then never reads.
    let mut slow = WsClient::connect_with_small_buffer(&chat.ws_url(0)).await;
    slow.send(json!({"type": "auth", "token": staff.token}))
        .await;
    slow.send(json!({"type": "subscribe", "room_id": room}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let body = "y".repeat(4000);
    let path = format!("/rooms/{room}/messages");
    let mut posts = Vec::new();
    for i in 0..400 {
        posts.push(chat.call(
            reqwest::Method::POST,
            &path,
            &visitor.token,
            Some(json!({"body": body, "client_msg_id": format!("p{i}")})),
        ));
        if posts.len() == 20 {
            futures_util::future::join_all(posts.drain(..)).await;
        }
    }
    futures_util::future::join_all(posts).await;
    let kicked = testkit::eventually(Duration::from_secs(10), || async {
        let metrics = chat
            .client
            .get(format!("{}/metrics", chat.replicas[0].url))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metrics
            .lines()
            .any(|line| {
                line.starts_with("chat_ws_slow_reader_disconnects_total") && !line.ends_with(" 0")
            })
            .then_some(())
    })
    .await;
    assert!(kicked.is_some(), "the slow reader was disconnected");
    drop(slow);
}

#[tokio::test]
async fn an_expiring_token_can_be_renewed_and_an_expired_one_closes_the_connection() {
    let chat = start().await;
    let visitor = chat.visitor();
    let short = |seconds: i64| {
        let now = chrono::Utc::now().timestamp();
        chat.issuer.sign(&AccessClaims {
            iss: chat.issuer.issuer().to_string(),
            aud: "platform".into(),
            sub: visitor.id.to_string(),
            roles: vec![Role::Visitor],
            sid: uuid::Uuid::now_v7().to_string(),
            iat: now,
            nbf: now,
            exp: now + seconds,
            jti: uuid::Uuid::new_v4().to_string(),
        })
    };
    // Expired 3 s ago: still within the verifier's 5 s of leeway, so
    // accepted, and closed when the leeway runs out.
    let mut renewed = WsClient::authed(&chat.ws_url(0), &short(-3)).await;
    renewed
        .send(json!({"type": "auth", "token": visitor.token}))
        .await;
    let mut lapsed = WsClient::authed(&chat.ws_url(0), &short(-3)).await;
    let started = std::time::Instant::now();
    assert_eq!(lapsed.close_code().await, Some(4401));
    assert!(started.elapsed() >= Duration::from_millis(500));
    renewed.send(json!({"type": "ping"})).await;
    assert_eq!(
        renewed.frame_of("pong").await["type"],
        "pong",
        "the renewed one stays"
    );
    // Renewing with other roles is no renewal either: reconnect.
    let mut promoted = WsClient::authed(&chat.ws_url(0), &short(60)).await;
    promoted
        .send(json!({"type": "auth", "token": chat.issuer.token(visitor.id, &[Role::Staff])}))
        .await;
    assert_eq!(promoted.close_code().await, Some(4401));
    // A token for someone else is no renewal.
    let other = chat.visitor();
    renewed
        .send(json!({"type": "auth", "token": other.token}))
        .await;
    assert_eq!(renewed.close_code().await, Some(4401));
}
