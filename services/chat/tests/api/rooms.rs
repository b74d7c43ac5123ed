use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_room_waits_until_staff_come_online_then_goes_to_them() {
    let chat = start().await;
    let staff = chat.staff().await;
    let visitor = chat.visitor();
    let room = chat.open_room(&visitor).await;
    assert_eq!(room["status"], "waiting");
    assert_eq!(room["priority"], "normal");
    assert_eq!(room["assignee_id"], serde_json::Value::Null);
    assert_eq!(room["last_seq"], 0);

    // The leader's drains meanwhile find nobody and decide nothing new.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let waiting = chat.n(&format!(
        "SELECT count(*) FROM assignment_decisions WHERE room_id = '{}' AND outcome = 'waiting'",
        id_of(&room)
    ));
    assert_eq!(waiting, 1, "one decision to wait, not one per drain");
    let mut ws = chat.connect(0, &staff).await;
    let frame = ws.frame_of("room").await;
    assert_eq!(frame["room"]["id"], room["id"]);
    assert_eq!(frame["room"]["status"], "active");
    assert_eq!(frame["room"]["assignee_id"], staff.id.to_string());
    let shown = chat.room(&visitor.token, &id_of(&room)).await;
    assert_eq!(shown["assignee_id"], staff.id.to_string());
    let reason = chat.n(&format!(
        "SELECT count(*) FROM assignment_decisions WHERE room_id = '{}' AND trigger = 'queue' AND outcome = 'assigned'",
        id_of(&room)
    ));
    assert_eq!(reason, 1, "the assignment from the queue is recorded");
}

#[tokio::test]
async fn a_room_goes_at_once_to_the_online_staff_member_with_fewest_rooms() {
    let chat = start().await;
    let busy = chat.staff().await;
    let free = chat.staff().await;
    let _busy_ws = chat.connect(0, &busy).await;
    let first = chat.open_room(&chat.visitor()).await;
    assert_eq!(first["status"], "active");
    let first_assignee = first["assignee_id"].as_str().unwrap().to_string();
    let _free_ws = chat.connect(0, &free).await;
    let second = chat.open_room(&chat.visitor()).await;
    assert_eq!(second["status"], "active");
    assert_ne!(
        second["assignee_id"].as_str().unwrap(),
        first_assignee,
        "the one with fewer active rooms gets the next"
    );
    let candidates = chat.n(&format!(
        "SELECT jsonb_array_length(candidates) FROM assignment_decisions WHERE room_id = '{}'",
        id_of(&second)
    ));
    assert_eq!(candidates, 2, "the decision records who it chose from");
}

/// The decision recorded for `room` with this trigger, outcome and reason
/// (and `extra`, a condition on its columns), counted.
fn decisions(
    chat: &Chat,
    room: &str,
    trigger: &str,
    outcome: &str,
    reason: &str,
    extra: &str,
) -> i64 {
    chat.n(&format!(
        "SELECT count(*) FROM assignment_decisions WHERE room_id = '{room}' AND trigger = '{trigger}' \
         AND outcome = '{outcome}' AND reason = '{reason}' AND {extra}"
    ))
}

#[tokio::test]
async fn every_decision_records_its_reason_and_the_staff_in_line() {
    let chat = start().await;
    let a = id_of(&chat.open_room(&chat.visitor()).await);
    assert_eq!(
        decisions(
            &chat,
            &a,
            "opened",
            "waiting",
            "no_staff_online",
            "candidates = '[]'"
        ),
        1
    );

    let first = chat.staff().await;
    chat.settings(&first, 1).await;
    let _first_ws = chat.connect(0, &first).await;
    let from_queue = testkit::eventually(Duration::from_secs(10), || async {
        (decisions(&chat, &a, "queue", "assigned", "only_free_staff", "true") == 1).then_some(())
    })
    .await;
    assert!(
        from_queue.is_some(),
        "the waiting room went to the one who came online"
    );

    let b = id_of(&chat.open_room(&chat.visitor()).await);
    let full_first = format!(
        "candidates = jsonb_build_array(jsonb_build_object('staff_id', '{}'::uuid, 'active_rooms', 1, \
         'max_active_rooms', 1, 'last_assigned_at', candidates -> 0 -> 'last_assigned_at')) \
         AND candidates -> 0 ->> 'last_assigned_at' IS NOT NULL",
        first.id
    );
    assert_eq!(
        decisions(
            &chat,
            &b,
            "opened",
            "waiting",
            "all_staff_at_capacity",
            &full_first
        ),
        1,
        "the line-up shows why nobody took it"
    );

    let second = chat.staff().await;
    chat.settings(&second, 2).await;
    let _second_ws = chat.connect(0, &second).await;
    let from_queue = testkit::eventually(Duration::from_secs(10), || async {
        (decisions(&chat, &b, "queue", "assigned", "only_free_staff", "true") == 1).then_some(())
    })
    .await;
    assert!(from_queue.is_some());

    let third = chat.staff().await;
    chat.settings(&third, 2).await;
    let _third_ws = chat.connect(0, &third).await;
    let c = chat.open_room(&chat.visitor()).await;
    assert_eq!(c["assignee_id"], third.id.to_string());
    assert_eq!(
        decisions(
            &chat,
            &id_of(&c),
            "opened",
            "assigned",
            "fewest_active_rooms",
            "true"
        ),
        1
    );

    // Second and third have one room each; second has waited longer.
    let d = chat.open_room(&chat.visitor()).await;
    let d_id = id_of(&d);
    assert_eq!(d["assignee_id"], second.id.to_string());
    let in_line = format!(
        "jsonb_array_length(candidates) = 3 AND candidates -> 0 ->> 'staff_id' = '{}' \
         AND candidates -> 1 ->> 'staff_id' = '{}' AND candidates -> 2 ->> 'staff_id' = '{}' \
         AND assignee_id = '{}' AND decided_by IS NULL",
        second.id, third.id, first.id, second.id
    );
    assert_eq!(
        decisions(&chat, &d_id, "opened", "assigned", "idle_longest", &in_line),
        1,
        "in the order of choice, the full one last"
    );

    let (status, body) = chat
        .call(
            Method::POST,
            &format!("/rooms/{d_id}/transfer"),
            &second.token,
            Some(json!({"staff_id": third.id})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let transferred = format!(
        "decided_by = '{}' AND assignee_id = '{}' AND jsonb_array_length(candidates) = 1 \
         AND candidates -> 0 ->> 'staff_id' = '{}' AND (candidates -> 0 ->> 'active_rooms')::int = 1",
        second.id, third.id, third.id
    );
    assert_eq!(
        decisions(
            &chat,
            &d_id,
            "transfer",
            "assigned",
            "transferred",
            &transferred
        ),
        1,
        "a transfer records who asked and the one who got it, as they were"
    );
    assert_eq!(
        chat.n("SELECT count(*) FROM agents WHERE active_rooms > max_active_rooms"),
        0
    );
    assert_eq!(
        chat.n(&format!(
            "SELECT active_rooms FROM agents WHERE user_id = '{}'",
            third.id
        )),
        2
    );
    assert_eq!(
        chat.n("SELECT count(*) FROM outbox WHERE message_type = 'chat.room_assigned'"),
        5,
        "every assignment is an event"
    );
}

#[tokio::test]
async fn opening_with_an_idempotency_key_twice_opens_one_room() {
    let chat = start().await;
    let visitor = chat.visitor();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = chat
            .client
            .post(chat.url("/rooms"))
            .bearer_auth(&visitor.token)
            .header("Idempotency-Key", "open-1")
            .json(&json!({"subject": "Billing"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let room: serde_json::Value = response.json().await.unwrap();
        assert_eq!(room["subject"], "Billing");
        ids.push(id_of(&room));
    }
    assert_eq!(ids[0], ids[1]);
    assert_eq!(chat.n("SELECT count(*) FROM rooms"), 1);
}

#[tokio::test]
async fn every_route_refuses_callers_without_the_role() {
    let chat = start().await;
    let visitor = chat.visitor();
    let user = chat.user();
    let staff = chat.staff().await;
    let room = id_of(&chat.open_room(&visitor).await);
    let routes: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::POST, "/rooms".into(), Some(json!({}))),
        (Method::GET, "/rooms".into(), None),
        (Method::GET, format!("/rooms/{room}"), None),
        (Method::GET, format!("/rooms/{room}/messages"), None),
        (
            Method::POST,
            format!("/rooms/{room}/messages"),
            Some(json!({"body": "hi"})),
        ),
        (Method::POST, format!("/rooms/{room}/claim"), None),
        (
            Method::POST,
            format!("/rooms/{room}/transfer"),
            Some(json!({"staff_id": staff.id})),
        ),
        (
            Method::POST,
            format!("/rooms/{room}/priority"),
            Some(json!({"priority": "high"})),
        ),
        (Method::GET, "/staff/me/settings".into(), None),
        (
            Method::PUT,
            "/staff/me/settings".into(),
            Some(json!({"max_active_rooms": 2, "notify_by_email": false})),
        ),
        (Method::GET, "/presence".into(), None),
        (Method::GET, "/bookmarks".into(), None),
        (Method::GET, format!("/bookmarks/{}", visitor.id), None),
        (
            Method::PUT,
            format!("/bookmarks/{}", visitor.id),
            Some(json!({"note": "x"})),
        ),
        (Method::DELETE, format!("/bookmarks/{}", visitor.id), None),
    ];
    for (method, path, body) in &routes {
        let (status, problem) = chat
            .call(method.clone(), path, "not-a-token", body.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {problem}"
        );
        let (status, problem) = chat
            .call(method.clone(), path, &user.token, body.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "user: {method} {path}: {problem}"
        );
    }
    // Visitors are refused what is for staff.
    for (method, path, body) in &routes[5..] {
        let (status, problem) = chat
            .call(method.clone(), path, &visitor.token, body.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "visitor: {method} {path}: {problem}"
        );
    }
    let (status, _) = chat
        .call(
            Method::POST,
            &format!("/rooms/{room}/close"),
            "not-a-token",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = chat
        .call(
            Method::POST,
            &format!("/rooms/{room}/close"),
            &user.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Staff do not open rooms.
    let (status, _) = chat
        .call(Method::POST, "/rooms", &staff.token, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let room_now = chat.room(&staff.token, &room).await;
    assert_eq!(
        room_now["status"], "waiting",
        "nothing refused changed the room"
    );
    assert_eq!(room_now["priority"], "normal");
    assert_eq!(chat.n("SELECT count(*) FROM messages"), 0);
}

#[tokio::test]
async fn bad_input_is_a_problem_naming_the_field_and_changes_nothing() {
    let chat = start().await;
    let visitor = chat.visitor();
    let staff = chat.staff().await;
    let room = id_of(&chat.open_room(&visitor).await);
    let cases: Vec<(&str, Method, String, serde_json::Value, &str)> = vec![
        (
            &visitor.token,
            Method::POST,
            "/rooms".into(),
            json!({"subject": "x".repeat(201)}),
            "subject",
        ),
        (
            &visitor.token,
            Method::POST,
            "/rooms".into(),
            json!({"subject": "  "}),
            "subject",
        ),
        (
            &visitor.token,
            Method::POST,
            format!("/rooms/{room}/messages"),
            json!({"body": ""}),
            "body",
        ),
        (
            &visitor.token,
            Method::POST,
            format!("/rooms/{room}/messages"),
            json!({"body": "x".repeat(4001)}),
            "body",
        ),
        (
            &visitor.token,
            Method::POST,
            format!("/rooms/{room}/messages"),
            json!({"body": "hi", "client_msg_id": "has space"}),
            "client_msg_id",
        ),
        (
            &staff.token,
            Method::POST,
            format!("/rooms/{room}/priority"),
            json!({"priority": "later"}),
            "priority",
        ),
        (
            &staff.token,
            Method::POST,
            format!("/rooms/{room}/transfer"),
            json!({"staff_id": visitor.id}),
            "staff_id",
        ),
        (
            &staff.token,
            Method::POST,
            format!("/rooms/{room}/transfer"),
            json!({"staff_id": "nope"}),
            "staff_id",
        ),
        (
            &staff.token,
            Method::PUT,
            "/staff/me/settings".into(),
            json!({"max_active_rooms": 1001, "notify_by_email": true}),
            "max_active_rooms",
        ),
        (
            &staff.token,
            Method::PUT,
            format!("/bookmarks/{}", visitor.id),
            json!({"note": "x".repeat(2001)}),
            "note",
        ),
        (
            &visitor.token,
            Method::POST,
            format!("/rooms/{room}/close"),
            json!({"transcript_email": "not-an-email"}),
            "transcript_email",
        ),
    ];
    for (token, method, path, body, field) in cases {
        let (status, problem) = chat.call(method.clone(), &path, token, Some(body)).await;
        assert!(
            status.is_client_error(),
            "{method} {path}: {status} {problem}"
        );
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            fields.iter().any(|f| f.contains(field))
                || problem["detail"].as_str().unwrap_or("").contains(field),
            "{method} {path}: the problem names {field}: {problem}"
        );
    }
    for (path, field) in [
        ("/rooms?limit=0", "limit"),
        ("/rooms?status=lost", "status"),
        ("/rooms?assignee=someone", "assignee"),
        ("/rooms?cursor=zzz", "cursor"),
    ] {
        let (status, problem) = chat.call(Method::GET, path, &staff.token, None).await;
        assert!(status.is_client_error(), "{path}: {status}");
        assert!(problem.to_string().contains(field), "{path}: {problem}");
    }
    let (status, _) = chat
        .call(
            Method::POST,
            "/rooms",
            &visitor.token,
            Some(json!({"colour": "red"})),
        )
        .await;
    assert!(status.is_client_error(), "unknown fields are refused");
    let (status, _) = chat
        .call(Method::GET, "/rooms/not-a-uuid", &staff.token, None)
        .await;
    assert!(status.is_client_error());
    assert_eq!(chat.n("SELECT count(*) FROM rooms"), 1);
    assert_eq!(chat.n("SELECT count(*) FROM messages"), 0);
    assert_eq!(chat.n("SELECT count(*) FROM bookmarks"), 0);
    let room_now = chat.room(&staff.token, &room).await;
    assert_eq!(
        (room_now["status"].as_str(), room_now["priority"].as_str()),
        (Some("waiting"), Some("normal"))
    );
}

#[tokio::test]
async fn a_visitor_never_reaches_another_visitors_room() {
    let chat = start().await;
    let alice = chat.visitor();
    let bob = chat.visitor();
    let room = id_of(&chat.open_room(&alice).await);
    let secret = chat.post(&alice, &room, "my card number is ...").await;
    for (method, path, body) in [
        (Method::GET, format!("/rooms/{room}"), None),
        (Method::GET, format!("/rooms/{room}/messages"), None),
        (
            Method::POST,
            format!("/rooms/{room}/messages"),
            Some(json!({"body": "hello"})),
        ),
        (Method::POST, format!("/rooms/{room}/close"), None),
    ] {
        let (status, problem) = chat.call(method.clone(), &path, &bob.token, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {problem}");
        assert_eq!(
            problem["detail"], "no such room",
            "the same answer as for no room at all"
        );
    }
    // A "retry" with Alice's client_msg_id tells Bob nothing either.
    let (status, problem) = chat
        .call(
            Method::POST,
            &format!("/rooms/{room}/messages"),
            &bob.token,
            Some(json!({"body": "x", "client_msg_id": secret["client_msg_id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, page) = chat.call(Method::GET, "/rooms", &bob.token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    let (_, page) = chat.call(Method::GET, "/rooms", &alice.token, None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(chat.n("SELECT count(*) FROM messages"), 1);
    let room_now = chat.room(&alice.token, &room).await;
    assert_eq!(room_now["status"], "waiting");
}

#[tokio::test]
async fn claim_transfer_priority_and_close() {
    let chat = start().await;
    let ann = chat.staff().await;
    let ben = chat.staff().await;
    let visitor = chat.visitor();
    let room = id_of(&chat.open_room(&visitor).await);

    let (status, body) = chat
        .call(
            Method::POST,
            &format!("/rooms/{room}/priority"),
            &ann.token,
            Some(json!({"priority": "urgent"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["priority"], "urgent");

    let (status, body) = chat
        .call(
            Method::POST,
            &format!("/rooms/{room}/claim"),
            &ann.token,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["assignee_id"].as_str()),
        (Some("active"), Some(ann.id.to_string().as_str()))
    );
    let (status, body) = chat
        .call(
            Method::POST,
            &format!("/rooms/{room}/claim"),
            &ben.token,
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a room that is not waiting: {body}"
    );

    // Ben at capacity 0 cannot be given it.
    chat.settings(&ben, 0).await;
    let (status, body) = chat
        .call(
            Method::POST,
            &format!("/rooms/{room}/transfer"),
            &ann.token,
            Some(json!({"staff_id": ben.id})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    chat.settings(&ben, 3).await;
    let (status, body) = chat
        .call(
            Method::POST,
            &format!("/rooms/{room}/transfer"),
            &ann.token,
            Some(json!({"staff_id": ben.id})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["assignee_id"], ben.id.to_string());
    let loads = chat.n(&format!(
        "SELECT sum(active_rooms * CASE WHEN user_id = '{}' THEN 10 ELSE 1 END) FROM agents",
        ben.id
    ));
    assert_eq!(loads, 10, "Ann has none now, Ben one");

    let (status, body) = chat
        .call(
            Method::POST,
            &format!("/rooms/{room}/close"),
            &visitor.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "closed");
    assert!(body["closed_at"].is_string());
    assert_eq!(chat.n("SELECT sum(active_rooms) FROM agents"), 0);
    let (status, _) = chat
        .call(
            Method::POST,
            &format!("/rooms/{room}/close"),
            &visitor.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "closing again changes nothing");
    let (status, body) = chat
        .call(
            Method::POST,
            &format!("/rooms/{room}/messages"),
            &visitor.token,
            Some(json!({"body": "still there?"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for (path, body) in [
        ("priority", json!({"priority": "low"})),
        ("transfer", json!({"staff_id": ann.id})),
    ] {
        let (status, _) = chat
            .call(
                Method::POST,
                &format!("/rooms/{room}/{path}"),
                &ann.token,
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{path} on a closed room");
    }
    let (status, _) = chat
        .call(
            Method::POST,
            &format!("/rooms/{}/claim", uuid::Uuid::now_v7()),
            &ann.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Events went out through the outbox.
    let sent = testkit::eventually(Duration::from_secs(10), || async {
        (chat.n("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL AND message_type LIKE 'chat.room_%'") == 4).then_some(())
    })
    .await;
    assert!(
        sent.is_some(),
        "opened, assigned twice and closed are published"
    );
}

#[tokio::test]
async fn lists_filter_by_status_and_assignee_and_page() {
    let chat = start().await;
    let staff = chat.staff().await;
    let _ws = chat.connect(0, &staff).await;
    chat.settings(&staff, 2).await;
    let visitor = chat.visitor();
    let mut rooms = Vec::new();
    for _ in 0..3 {
        rooms.push(id_of(&chat.open_room(&visitor).await));
    }
    let (_, mine) = chat
        .call(
            Method::GET,
            "/rooms?assignee=me&status=active",
            &staff.token,
            None,
        )
        .await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 2);
    let (_, waiting) = chat
        .call(Method::GET, "/rooms?status=waiting", &staff.token, None)
        .await;
    assert_eq!(waiting["items"][0]["id"], rooms[2].as_str());
    let (_, first) = chat
        .call(Method::GET, "/rooms?limit=2", &visitor.token, None)
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = chat
        .call(
            Method::GET,
            &format!("/rooms?limit=2&cursor={cursor}"),
            &visitor.token,
            None,
        )
        .await;
    assert_eq!(second["items"][0]["id"], rooms[2].as_str());
    assert_eq!(second["next_cursor"], serde_json::Value::Null);
}

#[tokio::test]
async fn settings_and_bookmarks() {
    let chat = start().await;
    let staff = chat.staff().await;
    let visitor = chat.visitor();
    let (status, settings) = chat
        .call(Method::GET, "/staff/me/settings", &staff.token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        settings,
        json!({"max_active_rooms": 3, "notify_by_email": true})
    );
    let (status, settings) = chat
        .call(
            Method::PUT,
            "/staff/me/settings",
            &staff.token,
            Some(json!({"max_active_rooms": 7, "notify_by_email": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        settings,
        json!({"max_active_rooms": 7, "notify_by_email": false})
    );

    let path = format!("/bookmarks/{}", visitor.id);
    let (status, _) = chat.call(Method::GET, &path, &staff.token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, mark) = chat
        .call(
            Method::PUT,
            &path,
            &staff.token,
            Some(json!({"note": "asks about refunds"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mark}");
    assert_eq!(mark["visitor_id"], visitor.id.to_string());
    let (status, mark) = chat
        .call(Method::PUT, &path, &staff.token, Some(json!({"note": ""})))
        .await;
    assert_eq!(status, StatusCode::OK, "{mark}");
    assert_eq!(mark["note"], "");
    let (_, listed) = chat
        .call(Method::GET, "/bookmarks", &staff.token, None)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let other = chat.staff().await;
    let (status, _) = chat.call(Method::GET, &path, &other.token, None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "bookmarks are each staff member's own"
    );
    let (status, _) = chat.call(Method::DELETE, &path, &staff.token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = chat.call(Method::DELETE, &path, &staff.token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
