//! A randomized test: allocations, ends, expiries, connects, heartbeats,
//! drains and lost hosts interleaved on two replicas. After every step
//! the database must hold: no instance over capacity, every instance's
//! `active_sessions` equal to its live sessions (no slot leaks or is
//! counted twice), and no user over the per-user limit.

use crate::helpers::*;
use instance_scheduling::reconciler;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

fn check_invariants(scheduler: &Scheduler, step: usize, seed: u64) {
    let over = scheduler.n("SELECT count(*) FROM instances WHERE active_sessions > capacity");
    assert_eq!(
        over, 0,
        "step {step} (seed {seed}): an instance over capacity"
    );
    let leaks = scheduler.n(
        "SELECT count(*) FROM instances i WHERE i.active_sessions <> (
             SELECT count(*) FROM sessions s
             WHERE s.instance_id = i.id AND s.status IN ('allocated', 'connected'))",
    );
    assert_eq!(
        leaks, 0,
        "step {step} (seed {seed}): a slot leaked or is counted twice"
    );
    let over_limit = scheduler.n(
        "SELECT count(*) FROM (SELECT user_id FROM sessions WHERE status IN ('allocated', 'connected')
                               GROUP BY user_id HAVING count(*) > 2) t",
    );
    assert_eq!(
        over_limit, 0,
        "step {step} (seed {seed}): a user over the limit"
    );
}

fn round(scheduler: &Scheduler) {
    let policy = scheduler.config.policy().unwrap();
    let mut conn = scheduler.db.connect().unwrap();
    reconciler::round(&mut conn, &policy).unwrap();
}

#[derive(diesel::QueryableByName)]
struct Live {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    instance_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    user_id: Uuid,
}

fn live_sessions(scheduler: &Scheduler) -> Vec<Live> {
    use diesel::RunQueryDsl;
    let mut conn = scheduler.db.connect().unwrap();
    diesel::sql_query(
        "SELECT id, instance_id, user_id FROM sessions WHERE status IN ('allocated', 'connected')",
    )
    .load(&mut conn)
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_interleavings_keep_every_slot_honest() {
    let seed: u64 = std::env::var("INTERLEAVING_SEED")
        .ok()
        .and_then(|raw| raw.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let scheduler = start_with(2, |config| {
        config.reconcile_interval_secs = 3600;
        config.max_sessions_per_user = 2;
        config.region_fallback = r#"{"eu":["local"]}"#.into();
    })
    .await;
    let admin = scheduler.admin();
    let users: Vec<Person> = (0..12).map(|_| scheduler.user()).collect();
    let mut agents: Vec<Agent> = Vec::new();
    for i in 0..4 {
        let region = if i % 2 == 0 { "local" } else { "eu" };
        agents.push(
            scheduler
                .register(
                    region,
                    rng.gen_range(1..=3),
                    &format!("127.0.0.1:{}", 9100 + i),
                )
                .await,
        );
    }
    for step in 0..40 {
        // A batch of operations at once, on both replicas.
        let mut batch = Vec::new();
        for _ in 0..6 {
            let replica = rng.gen_range(0..2);
            let choice = rng.gen_range(0..10);
            let user = users[rng.gen_range(0..users.len())].clone();
            let live = live_sessions(&scheduler);
            let picked = (!live.is_empty()).then(|| &live[rng.gen_range(0..live.len())]);
            let op: (Method, String, String, Option<serde_json::Value>) = match (choice, picked) {
                (0..=4, _) => {
                    let region = if rng.gen_bool(0.5) { "local" } else { "eu" };
                    (
                        Method::POST,
                        "/sessions".into(),
                        user.token.clone(),
                        Some(json!({"region": region})),
                    )
                }
                (5 | 6, Some(session)) => {
                    let owner = users
                        .iter()
                        .find(|u| u.id == session.user_id)
                        .map_or(admin.token.clone(), |u| u.token.clone());
                    (
                        Method::DELETE,
                        format!("/sessions/{}", session.id),
                        owner,
                        None,
                    )
                }
                (7, Some(session)) => {
                    let agent = agents.iter().find(|a| a.id == session.instance_id);
                    match agent {
                        Some(agent) => (
                            Method::POST,
                            format!("/instances/{}/sessions/{}/connected", agent.id, session.id),
                            agent.credential.clone(),
                            None,
                        ),
                        None => continue,
                    }
                }
                (8, _) => {
                    let agent = &agents[rng.gen_range(0..agents.len())];
                    let connected: Vec<Uuid> = live
                        .iter()
                        .filter(|s| s.instance_id == agent.id && rng.gen_bool(0.7))
                        .map(|s| s.id)
                        .collect();
                    (
                        Method::POST,
                        format!("/instances/{}/heartbeat", agent.id),
                        agent.credential.clone(),
                        Some(json!({"cpu_pct": 10, "mem_pct": 20, "sessions": connected})),
                    )
                }
                _ => {
                    let agent = &agents[rng.gen_range(0..agents.len())];
                    (
                        Method::POST,
                        format!("/instances/{}/drain", agent.id),
                        admin.token.clone(),
                        None,
                    )
                }
            };
            let scheduler = &scheduler;
            batch.push(async move {
                let (status, body) = scheduler.call_on(replica, op.0, &op.1, &op.2, op.3).await;
                assert!(
                    !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
                    "{} {}: {status} {body}",
                    op.1,
                    seed
                );
            });
        }
        futures_util::future::join_all(batch).await;
        check_invariants(&scheduler, step, seed);
        // Now and then: reservations expire, a host is lost, the
        // reconciler runs, a new host arrives.
        if rng.gen_bool(0.3) {
            scheduler.sql("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE status = 'allocated' AND random() < 0.5");
        }
        if rng.gen_bool(0.15) {
            let agent = &agents[rng.gen_range(0..agents.len())];
            scheduler.age_heartbeat(agent, 120);
        }
        if rng.gen_bool(0.5) {
            round(&scheduler);
            check_invariants(&scheduler, step, seed);
        }
        if rng.gen_bool(0.2) {
            let region = if rng.gen_bool(0.5) { "local" } else { "eu" };
            let port = 9200 + step;
            agents.push(
                scheduler
                    .register(region, rng.gen_range(1..=3), &format!("127.0.0.1:{port}"))
                    .await,
            );
        }
    }
    round(&scheduler);
    check_invariants(&scheduler, 40, seed);
}
