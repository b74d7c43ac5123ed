//! Assignment under random arrivals, closes, transfers and capacity
//! changes, across two replicas, checked against its invariants.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

/// A small deterministic generator (a test must be repeatable).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Debug)]
struct RoomState {
    id: String,
    status: String,
    assignee: Option<String>,
    rank: i64,
    created_at: String,
}

fn rooms(chat: &Chat) -> Vec<RoomState> {
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Nullable, Text};
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        status: String,
        #[diesel(sql_type = Nullable<Text>)]
        assignee: Option<String>,
        #[diesel(sql_type = BigInt)]
        rank: i64,
        #[diesel(sql_type = Text)]
        created_at: String,
    }
    let mut conn = chat.db.connect().unwrap();
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT id::text, status, assignee_id::text AS assignee, priority_rank::bigint AS rank,
                to_char(created_at, 'YYYY-MM-DD HH24:MI:SS.US') AS created_at
         FROM rooms ORDER BY id",
    )
    .load(&mut conn)
    .unwrap();
    rows.into_iter()
        .map(|r| RoomState {
            id: r.id,
            status: r.status,
            assignee: r.assignee,
            rank: r.rank,
            created_at: r.created_at,
        })
        .collect()
}

/// The invariants, checked once the system has settled.
fn check(chat: &Chat, capacity: &HashMap<String, i64>, round: usize) {
    let rooms = rooms(chat);
    let mut load: HashMap<String, i64> = HashMap::new();
    for room in rooms.iter().filter(|r| r.status == "active") {
        *load.entry(room.assignee.clone().unwrap()).or_default() += 1;
    }
    for (staff, max) in capacity {
        let active = load.get(staff).copied().unwrap_or(0);
        assert!(
            active <= *max,
            "round {round}: {staff} has {active} rooms, capacity {max}"
        );
        let counted = chat.n(&format!(
            "SELECT active_rooms::bigint FROM agents WHERE user_id = '{staff}'"
        ));
        assert_eq!(
            counted, active,
            "round {round}: the agent's count matches its rooms"
        );
    }
    // One assignee: a room leaves the queue once (transfers move it on).
    let twice = chat.n(
        "SELECT count(*) FROM (SELECT room_id FROM assignment_decisions
           WHERE outcome = 'assigned' AND trigger IN ('opened', 'queue', 'claim')
           GROUP BY room_id HAVING count(*) > 1) t",
    );
    assert_eq!(twice, 0, "round {round}: a room was assigned twice");
    // Settled: a room waits only when nobody online is free.
    let waiting = rooms.iter().filter(|r| r.status == "waiting").count();
    if waiting > 0 {
        for (staff, max) in capacity {
            let online = chat.n(&format!(
                "SELECT count(*) FROM agents WHERE user_id = '{staff}' AND online"
            ));
            assert_eq!(online, 1, "round {round}: {staff} stays online");
            let active = load.get(staff).copied().unwrap_or(0);
            assert_eq!(
                active, *max,
                "round {round}: {waiting} rooms wait while {staff} is free"
            );
        }
    }
    // Queue order: no room left the queue while one ahead of it waits.
    for ahead in rooms.iter().filter(|r| r.status == "waiting") {
        let jumped = chat.n(&format!(
            "SELECT count(*) FROM assignment_decisions d JOIN rooms r ON r.id = d.room_id
             WHERE d.trigger = 'queue' AND d.outcome = 'assigned'
               AND (r.priority_rank, r.created_at) > ({}, '{}'::timestamptz)",
            ahead.rank, ahead.created_at
        ));
        assert_eq!(
            jumped, 0,
            "round {round}: a room behind {} left the queue first",
            ahead.id
        );
    }
}

#[tokio::test]
async fn random_arrivals_closes_transfers_and_capacity_changes_keep_the_invariants() {
    let chat = start_with(2, quick).await;
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let mut staff = Vec::new();
    let mut sockets = Vec::new();
    let mut capacity = HashMap::new();
    for i in 0..4 {
        let person = chat.staff().await;
        chat.settings(&person, 1).await;
        sockets.push(chat.connect(i % 2, &person).await);
        capacity.insert(person.id.to_string(), 1i64);
        staff.push(person);
    }
    let visitor = chat.visitor();
    for round in 0..12 {
        let mut work = Vec::new();
        // One settings change per staff member per batch: two at once
        // could commit in either order.
        let mut resized = std::collections::HashSet::new();
        for _ in 0..6 {
            let replica = rng.below(2);
            let choice = rng.below(10);
            let rooms = rooms(&chat);
            let open: Vec<&RoomState> = rooms.iter().filter(|r| r.status != "closed").collect();
            let actor = &staff[rng.below(staff.len())];
            let resize = choice >= 9 && resized.insert(actor.id);
            let (method, path, token, body) = if (choice < 5 && !resize) || open.is_empty() {
                (
                    Method::POST,
                    "/rooms".to_string(),
                    visitor.token.clone(),
                    json!({}),
                )
            } else if choice < 7 {
                let room = &open[rng.below(open.len())];
                (
                    Method::POST,
                    format!("/rooms/{}/close", room.id),
                    actor.token.clone(),
                    json!({}),
                )
            } else if choice < 9 || !resize {
                let room = &open[rng.below(open.len())];
                let target = &staff[rng.below(staff.len())];
                (
                    Method::POST,
                    format!("/rooms/{}/transfer", room.id),
                    actor.token.clone(),
                    json!({"staff_id": target.id}),
                )
            } else {
                let grown = (capacity[&actor.id.to_string()] + 1).min(4);
                capacity.insert(actor.id.to_string(), grown);
                (
                    Method::PUT,
                    "/staff/me/settings".to_string(),
                    actor.token.clone(),
                    json!({"max_active_rooms": grown, "notify_by_email": false}),
                )
            };
            let chat = &chat;
            work.push(async move {
                let (status, answer) = chat
                    .call_on(replica, method.clone(), &path, &token, Some(body))
                    .await;
                assert!(
                    status.is_success() || status.as_u16() == 409,
                    "{method} {path}: {status} {answer}"
                );
            });
        }
        futures_util::future::join_all(work).await;
        // Settled: the leader drains at least once a second.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        check(&chat, &capacity, round);
    }
    assert!(
        chat.n("SELECT count(*) FROM assignment_decisions WHERE trigger = 'queue'") > 0,
        "the queue was exercised"
    );
    drop(sockets);
}
