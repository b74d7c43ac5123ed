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
