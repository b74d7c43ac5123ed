//! Allocation under concurrency: the database keeps every slot honest.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::HashMap;

/// 64 users allocate at once, spread over the replicas; the answers.
async fn rush(
    scheduler: &Scheduler,
    users: &[Person],
) -> Vec<(StatusCode, serde_json::Value, bool)> {
    let replicas = scheduler.replicas.len();
    futures_util::future::join_all(users.iter().enumerate().map(|(i, user)| async move {
        let response = scheduler
            .client
            .post(scheduler.url_on(i % replicas, "/sessions"))
            .bearer_auth(&user.token)
            .json(&json!({"region": "local"}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let retry_after = response.headers().contains_key("retry-after");
        (
            status,
            response.json().await.unwrap_or_default(),
            retry_after,
        )
    }))
    .await
}

fn per_instance(answers: &[(StatusCode, serde_json::Value, bool)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (status, body, _) in answers {
        if *status == StatusCode::CREATED {
            *counts
                .entry(body["instance"]["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    counts
}

fn check_rush(answers: &[(StatusCode, serde_json::Value, bool)], expected: usize) {
    let created = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, expected, "exactly the free slots are given out");
    for (status, body, retry_after) in answers {
        if *status != StatusCode::CREATED {
            assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert!(retry_after, "every 503 carries Retry-After");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_at_once_against_three_hosts_of_four_get_twelve() {
    let scheduler = start_with(2, |_| {}).await;
    for port in 9100..9103 {
        scheduler
            .register("local", 4, &format!("127.0.0.1:{port}"))
            .await;
    }
    let users: Vec<Person> = (0..64).map(|_| scheduler.user()).collect();
    let answers = rush(&scheduler, &users).await;
    check_rush(&answers, 12);
    let counts = per_instance(&answers);
    assert_eq!(counts.len(), 3);
    assert!(counts.values().all(|n| *n == 4), "4 per host: {counts:?}");
    assert_eq!(
        scheduler.n("SELECT count(*) FROM sessions WHERE status = 'allocated'"),
        12
    );
    assert_eq!(
        scheduler.n("SELECT sum(active_sessions) FROM instances"),
        12
    );

    // End all twelve, and do it again: the slots came back, none leaked.
    let admin = scheduler.admin();
    for (status, body, _) in &answers {
        if *status == StatusCode::CREATED {
            let (status, _) = scheduler
                .call(
                    Method::DELETE,
                    &format!("/sessions/{}", session_of(body)),
                    &admin.token,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
        }
    }
    assert_eq!(scheduler.n("SELECT sum(active_sessions) FROM instances"), 0);
    let users: Vec<Person> = (0..64).map(|_| scheduler.user()).collect();
    let answers = rush(&scheduler, &users).await;
    check_rush(&answers, 12);
    assert!(per_instance(&answers).values().all(|n| *n == 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_ending_during_the_race_are_reused_and_never_overfilled() {
    let scheduler = start_with(2, |_| {}).await;
    for port in 9100..9103 {
        scheduler
            .register("local", 4, &format!("127.0.0.1:{port}"))
            .await;
    }
    let holders: Vec<Person> = (0..6).map(|_| scheduler.user()).collect();
    let mut held = Vec::new();
    for holder in &holders {
        let (status, body) = scheduler.allocate(holder, json!({"region": "local"})).await;
        assert_eq!(status, StatusCode::CREATED);
        held.push((holder.clone(), session_of(&body)));
    }
    let users: Vec<Person> = (0..64).map(|_| scheduler.user()).collect();
    let ending = async {
        for (holder, session) in &held {
            let (status, _) = scheduler
                .call(
                    Method::DELETE,
                    &format!("/sessions/{session}"),
                    &holder.token,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
        }
    };
    let (answers, ()) = tokio::join!(rush(&scheduler, &users), ending);
    let created = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::CREATED)
        .count();
    // Six were free from the start; up to six more as the holders left.
    assert!((6..=12).contains(&created), "{created}");
    assert!(per_instance(&answers).values().all(|n| *n <= 4));
    assert_eq!(
        scheduler.n("SELECT count(*) FROM sessions WHERE status = 'allocated'"),
        created as i64
    );
    assert_eq!(
        scheduler.n("SELECT sum(active_sessions) FROM instances"),
        created as i64
    );
    assert_eq!(
        scheduler.n("SELECT count(*) FROM instances WHERE active_sessions > capacity"),
        0
    );
}

#[test]
fn the_database_refuses_overflow_and_a_second_live_session_whatever_the_code() {
    let db = database();
    let mut conn = db.connect().unwrap();
    use diesel::connection::SimpleConnection;
    conn.batch_execute(
        "INSERT INTO instances (id, region, address, provider, status, capacity, active_sessions)
         VALUES ('00000000-0000-0000-0000-000000000001', 'local', '127.0.0.1:9100', 'manual', 'active', 1, 1)",
    )
    .unwrap();
    let overflow = conn.batch_execute(
        "UPDATE instances SET active_sessions = 2 WHERE id = '00000000-0000-0000-0000-000000000001'",
    );
    assert!(overflow.is_err(), "the CHECK refuses used > capacity");
    let insert = |id: &str| {
        format!(
            "INSERT INTO sessions (id, instance_id, user_id, status, user_slot, token_id, expires_at)
             VALUES ('{id}', '00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000aa',
                     'allocated', 1, gen_random_uuid(), now() + interval '1 minute')"
        )
    };
    conn.batch_execute(&insert("00000000-0000-0000-0000-000000000010"))
        .unwrap();
    let second = conn.batch_execute(&insert("00000000-0000-0000-0000-000000000011"));
    assert!(
        second.is_err(),
        "the unique index refuses a second live session in slot 1"
    );
}
