use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn messages_take_consecutive_seqs_and_a_retry_is_stored_once() {
    let chat = start().await;
    let visitor = chat.visitor();
    let staff = chat.staff().await;
    let room = id_of(&chat.open_room(&visitor).await);
    let path = format!("/rooms/{room}/messages");
    let mut sends = Vec::new();
    for i in 0..10 {
        let author = if i % 2 == 0 { &visitor } else { &staff };
        sends.push(chat.call(
            Method::POST,
            &path,
            &author.token,
            Some(json!({"body": format!("m{i}"), "client_msg_id": format!("c{i}")})),
        ));
    }
    let answers = futures_util::future::join_all(sends).await;
    let mut seqs: Vec<i64> = answers
        .iter()
        .map(|(status, message)| {
            assert_eq!(*status, StatusCode::CREATED, "{message}");
            message["seq"].as_i64().unwrap()
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "no gap, no duplicate");

    let (status, again) = chat
        .call(
            Method::POST,
            &path,
            &visitor.token,
            Some(json!({"body": "m0", "client_msg_id": "c0"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let first = answers
        .iter()
        .find(|(_, m)| m["client_msg_id"] == "c0")
        .unwrap();
    assert_eq!(again["seq"], first.1["seq"]);
    assert_eq!(again["id"], first.1["id"]);
    // The Idempotency-Key header is the client_msg_id when the body has none.
    for _ in 0..2 {
        let response = chat
            .client
            .post(chat.url(&path))
            .bearer_auth(&visitor.token)
            .header("Idempotency-Key", "k-1")
            .json(&json!({"body": "once"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    assert_eq!(
        chat.n(&format!(
            "SELECT count(*) FROM messages WHERE room_id = '{room}'"
        )),
        11
    );
    assert_eq!(chat.room(&visitor.token, &room).await["last_seq"], 11);
    let (_, staff_message) = &answers[1];
    assert_eq!(staff_message["author_role"], "staff");
    assert_eq!(answers[0].1["author_role"], "visitor");
}

#[tokio::test]
async fn history_pages_forward_and_back() {
    let chat = start().await;
    let visitor = chat.visitor();
    let room = id_of(&chat.open_room(&visitor).await);
    for i in 1..=7 {
        chat.post(&visitor, &room, &format!("m{i}")).await;
    }
    let seqs = |page: &serde_json::Value| -> Vec<i64> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect()
    };
    let get = |query: String| {
        let chat = &chat;
        let token = visitor.token.clone();
        let room = room.clone();
        async move {
            let (status, page) = chat
                .call(
                    Method::GET,
                    &format!("/rooms/{room}/messages{query}"),
                    &token,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            page
        }
    };
    let all = get(String::new()).await;
    assert_eq!(seqs(&all), (1..=7).collect::<Vec<_>>());
    assert_eq!(all["next_cursor"], serde_json::Value::Null);
    let first = get("?after_seq=0&limit=3".into()).await;
    assert_eq!(seqs(&first), vec![1, 2, 3]);
    let next = get(format!(
        "?limit=3&cursor={}",
        first["next_cursor"].as_str().unwrap()
    ))
    .await;
    assert_eq!(seqs(&next), vec![4, 5, 6]);
    let after = get("?after_seq=5".into()).await;
    assert_eq!(seqs(&after), vec![6, 7]);
    let before = get("?before_seq=6&limit=2".into()).await;
    assert_eq!(seqs(&before), vec![4, 5], "the n just before");
    let older = get(format!(
        "?limit=2&cursor={}",
        before["next_cursor"].as_str().unwrap()
    ))
    .await;
    assert_eq!(seqs(&older), vec![2, 3]);
    let (status, problem) = chat
        .call(
            Method::GET,
            &format!("/rooms/{room}/messages?after_seq=-1"),
            &visitor.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "after_seq");
    let (status, _) = chat
        .call(
            Method::GET,
            &format!("/rooms/{room}/messages?cursor=x:1"),
            &visitor.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn messages_sent_together_are_stored_once_each_in_order_even_when_retried_at_once() {
    let chat = start().await;
    let staff = chat.staff().await;
    let _staff_ws = chat.connect(0, &staff).await;
    let mut rooms = Vec::new();
    for _ in 0..6 {
        let visitor = chat.visitor();
        let room = id_of(&chat.open_room(&visitor).await);
        rooms.push((visitor, room));
    }
    // Every message is sent twice at the same moment, as a client that
    // retries before its first answer would.
    let mut sends = Vec::new();
    let chat = &chat;
    for (visitor, room) in &rooms {
        for i in 0..8 {
            for _ in 0..2 {
                sends.push(async move {
                    let (status, message) = chat
                        .call(
                            Method::POST,
                            &format!("/rooms/{room}/messages"),
                            &visitor.token,
                            Some(
                                json!({"body": format!("m{i}"), "client_msg_id": format!("c{i}")}),
                            ),
                        )
                        .await;
                    assert_eq!(status, StatusCode::CREATED, "{message}");
                    message
                });
            }
        }
    }
    let answers = futures_util::future::join_all(sends).await;
    for (_, room) in &rooms {
        let mut by_client: std::collections::BTreeMap<String, Vec<&serde_json::Value>> =
            Default::default();
        for answer in answers.iter().filter(|m| m["room_id"] == room.as_str()) {
            by_client
                .entry(answer["client_msg_id"].as_str().unwrap().to_string())
                .or_default()
                .push(answer);
        }
        assert_eq!(by_client.len(), 8);
        let mut seqs = Vec::new();
        for (client, tries) in &by_client {
            assert_eq!(tries.len(), 2);
            assert_eq!(
                tries[0]["id"], tries[1]["id"],
                "both tries of {client} get one message"
            );
            assert_eq!(tries[0]["seq"], tries[1]["seq"]);
            seqs.push(tries[0]["seq"].as_i64().unwrap());
        }
        seqs.sort();
        assert_eq!(
            seqs,
            (1..=8).collect::<Vec<_>>(),
            "no gap, no duplicate in {room}"
        );
        assert_eq!(
            chat.n(&format!(
                "SELECT count(*) FROM messages WHERE room_id = '{room}'"
            )),
            8
        );
        assert_eq!(
            chat.n(&format!("SELECT last_seq FROM rooms WHERE id = '{room}'")),
            8
        );
    }
}

#[tokio::test]
async fn a_message_for_a_room_another_transaction_holds_waits_for_it_and_holds_up_no_other() {
    use diesel::connection::SimpleConnection;
    let chat = start().await;
    let (held_visitor, other_visitor) = (chat.visitor(), chat.visitor());
    let held = id_of(&chat.open_room(&held_visitor).await);
    let other = id_of(&chat.open_room(&other_visitor).await);
    let mut locker = chat.db.connect().unwrap();
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM rooms WHERE id = '{held}' FOR UPDATE"
        ))
        .unwrap();
    let waiting = {
        let client = chat.client.clone();
        let url = chat.url(&format!("/rooms/{held}/messages"));
        let token = held_visitor.token.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"body": "held"}))
                .send()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let message = chat.post(&other_visitor, &other, "free").await;
    assert_eq!(
        message["seq"], 1,
        "the other room's message went through meanwhile"
    );
    assert!(
        !waiting.is_finished(),
        "the held room's message waits for the lock"
    );
    locker.batch_execute("COMMIT").unwrap();
    let response = waiting.await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let stored: serde_json::Value = response.json().await.unwrap();
    assert_eq!(stored["seq"], 1);
    assert_eq!(stored["body"], "held");
}
