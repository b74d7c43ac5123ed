//! The reconciler: lost hosts, drains, launches and scale-down, each
//! with its provisioning job in the outbox; and the worker's events.

use crate::helpers::*;
use domain::messages::{InstanceLaunchFailed, InstanceTerminated};
use instance_scheduling::reconciler;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// One reconciler round on the test database, as the leader runs it.
fn round(scheduler: &Scheduler) -> reconciler::Round {
    let policy = scheduler.config.policy().unwrap();
    let mut conn = scheduler.db.connect().unwrap();
    reconciler::round(&mut conn, &policy).unwrap()
}

fn status_of(scheduler: &Scheduler, id: Uuid) -> String {
    let statuses = [
        "provisioning",
        "active",
        "draining",
        "unresponsive",
        "terminating",
        "terminated",
    ];
    statuses
        .iter()
        .find(|status| {
            scheduler.n(&format!(
                "SELECT count(*) FROM instances WHERE id = '{id}' AND status = '{status}'"
            )) == 1
        })
        .map(|status| status.to_string())
        .unwrap_or_default()
}

fn terminate_jobs_for(scheduler: &Scheduler, id: Uuid) -> i64 {
    scheduler.n(&format!(
        "SELECT count(*) FROM outbox WHERE message_type = 'provisioning'
         AND payload -> 'data' ->> 'action' = 'terminate' AND payload -> 'data' ->> 'instance_id' = '{id}'"
    ))
}

/// No leader rounds in the background: the tests run them.
fn manual(config: &mut instance_scheduling::config::Config) {
    config.reconcile_interval_secs = 3600;
}

#[tokio::test]
async fn a_lost_host_is_skipped_when_stale_then_unresponsive_with_its_sessions_ended() {
    let scheduler = start_with(1, manual).await;
    let lost = scheduler.register("local", 2, "127.0.0.1:9100").await;
    let user = scheduler.user();
    let (status, allocated) = scheduler.allocate(&user, json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let session = session_of(&allocated);
    scheduler.age_heartbeat(&lost, 20);
    let (status, _) = scheduler.allocate(&scheduler.user(), json!({})).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "stale: no new sessions"
    );
    assert_eq!(round(&scheduler).lost, 0, "stale is not lost yet");
    assert_eq!(status_of(&scheduler, lost.id), "active");
    scheduler.age_heartbeat(&lost, 61);
    assert_eq!(round(&scheduler).lost, 1);
    assert_eq!(status_of(&scheduler, lost.id), "unresponsive");
    let (_, shown) = scheduler
        .call(
            Method::GET,
            &format!("/sessions/{session}"),
            &user.token,
            None,
        )
        .await;
    assert_eq!(shown["status"], "ended");
    assert_eq!(scheduler.n("SELECT active_sessions FROM instances"), 0);
    assert_eq!(terminate_jobs_for(&scheduler, lost.id), 1);
    assert_eq!(round(&scheduler).lost, 0, "once");
    assert_eq!(
        terminate_jobs_for(&scheduler, lost.id),
        1,
        "one job, not one per round"
    );
    let (_, answer) = scheduler.heartbeat(&lost, &[]).await;
    assert_eq!(answer["terminate"], true, "a late agent is told to stop");
    // The relay publishes the job to the worker's queue.
    let job = scheduler
        .bus
        .take("provisioning", Duration::from_secs(10))
        .await;
    let job = job
        .expect("the terminate job reaches the provisioning queue")
        .json();
    assert_eq!(job["data"]["action"], "terminate");
    assert_eq!(job["data"]["instance_id"], lost.id.to_string());
}

#[tokio::test]
async fn a_drained_instance_is_terminated_once_empty_or_at_the_deadline() {
    let scheduler = start_with(1, manual).await;
    let admin = scheduler.admin();
    let agent = scheduler.register("local", 2, "127.0.0.1:9100").await;
    let user = scheduler.user();
    let (_, allocated) = scheduler.allocate(&user, json!({})).await;
    let (status, _) = scheduler
        .call(
            Method::POST,
            &format!("/instances/{}/drain", agent.id),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(round(&scheduler).drained, 0, "it still has a session");
    assert_eq!(status_of(&scheduler, agent.id), "draining");
    let (status, _) = scheduler
        .call(
            Method::DELETE,
            &format!("/sessions/{}", session_of(&allocated)),
            &user.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(round(&scheduler).drained, 1);
    assert_eq!(status_of(&scheduler, agent.id), "terminating");
    assert_eq!(terminate_jobs_for(&scheduler, agent.id), 1);

    // Another, whose session outstays the deadline.
    let slow = scheduler.register("local", 2, "127.0.0.1:9101").await;
    let (_, kept) = scheduler.allocate(&user, json!({})).await;
    assert_eq!(kept["instance"]["id"], slow.id.to_string());
    scheduler
        .call(
            Method::POST,
            &format!("/instances/{}/drain", slow.id),
            &admin.token,
            None,
        )
        .await;
    scheduler.sql(&format!(
        "UPDATE instances SET drain_started_at = now() - interval '2 hours' WHERE id = '{}'",
        slow.id
    ));
    assert_eq!(round(&scheduler).drained, 1);
    assert_eq!(status_of(&scheduler, slow.id), "terminating");
    assert_eq!(
        scheduler.n(&format!(
            "SELECT count(*) FROM sessions WHERE id = '{}' AND end_reason = 'drain_deadline'",
            session_of(&kept)
        )),
        1
    );
}

#[tokio::test]
async fn the_buffer_is_reached_without_overshoot_and_idle_surplus_goes() {
    let scheduler = start_with(1, |config| {
        manual(config);
        config.scaling_regions =
            r#"{"local":{"buffer":3,"min_instances":1,"max_instances":4,"capacity":2}}"#.into();
        config.scale_down_cooldown_secs = 0;
    })
    .await;
    // Free 0 + pending 0 < 3: two launches of 2 cover it.
    assert_eq!(round(&scheduler).launched, 2);
    assert_eq!(round(&scheduler).launched, 0, "pending launches count");
    let launches: Vec<Uuid> = {
        use diesel::prelude::*;
        let mut conn = scheduler.db.connect().unwrap();
        diesel::sql_query("SELECT id FROM instances WHERE status = 'provisioning' ORDER BY id")
            .load::<IdRow>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|row| row.id)
            .collect()
    };
    assert_eq!(launches.len(), 2);
    assert_eq!(
        scheduler.n("SELECT count(*) FROM outbox WHERE message_type = 'provisioning' AND payload -> 'data' ->> 'action' = 'launch' AND (payload -> 'data' ->> 'capacity')::int = 2"),
        2
    );
    // Their agents register, fulfilling the launches.
    for (i, id) in launches.iter().enumerate() {
        let (status, body) = scheduler
            .call(
                Method::POST,
                "/instances/register",
                SECRET,
                Some(json!({"region": "local", "capacity": 2, "address": format!("127.0.0.1:{}", 9100 + i),
                            "instance_id": id, "provider": "process"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(
        round(&scheduler),
        reconciler::Round::default(),
        "4 free >= 3: steady"
    );
    // Two sessions: 2 free < 3, one more launch.
    let users = [scheduler.user(), scheduler.user()];
    let mut sessions = Vec::new();
    for user in &users {
        let (_, body) = scheduler.allocate(user, json!({})).await;
        sessions.push((user, session_of(&body)));
    }
    assert_eq!(round(&scheduler).launched, 1);
    // A manual instance with room covers the launch's place: once it is
    // registered and the sessions end, 4 + 2 free: one idle instance goes
    // (6 - 2 >= 3), never the one with a session.
    scheduler.register("local", 2, "127.0.0.1:9109").await;
    let (user, session) = &sessions[0];
    scheduler
        .call(
            Method::DELETE,
            &format!("/sessions/{session}"),
            &user.token,
            None,
        )
        .await;
    scheduler.sql("UPDATE instances SET status = 'terminated', terminated_at = now() WHERE status = 'provisioning'");
    let busy: String = {
        let (_, shown) = scheduler
            .call(
                Method::GET,
                &format!("/sessions/{}", sessions[1].1),
                &sessions[1].0.token,
                None,
            )
            .await;
        shown["instance_id"].as_str().unwrap().to_string()
    };
    let mut drained = 0;
    for _ in 0..3 {
        drained += round(&scheduler).scaled_down;
    }
    assert!(drained >= 1, "idle surplus is drained");
    assert_eq!(
        scheduler.n(&format!(
            "SELECT count(*) FROM instances WHERE id = '{busy}' AND status = 'active'"
        )),
        1,
        "never the busy one"
    );
    let free = scheduler
        .n("SELECT sum(capacity - active_sessions) FROM instances WHERE status = 'active'");
    assert!(free >= 3, "the buffer stays covered: {free}");
}

#[derive(diesel::QueryableByName)]
struct IdRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_launch_nothing_twice() {
    let scheduler = start_with(2, |config| {
        config.scaling_regions =
            r#"{"local":{"buffer":4,"min_instances":0,"max_instances":5,"capacity":2}}"#.into();
    })
    .await;
    let launched = testkit::eventually(Duration::from_secs(10), || async {
        (scheduler.n("SELECT count(*) FROM instances WHERE status = 'provisioning'") == 2)
            .then_some(())
    })
    .await;
    assert!(launched.is_some(), "the leader launched two");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        scheduler.n("SELECT count(*) FROM instances"),
        2,
        "several rounds on two replicas: still two"
    );
    assert_eq!(
        scheduler.n("SELECT count(*) FROM provisioning_requests WHERE action = 'launch'"),
        2
    );
}

#[tokio::test]
async fn a_launch_that_never_registers_is_given_up_and_the_worker_s_events_are_heeded() {
    let scheduler = start_with(1, |config| {
        manual(config);
        config.launch_timeout_secs = 30;
    })
    .await;
    let stuck = Uuid::now_v7();
    let failed = Uuid::now_v7();
    scheduler.sql(&format!(
        "INSERT INTO instances (id, region, provider, status, capacity, created_at) VALUES
           ('{stuck}', 'local', 'process', 'provisioning', 2, now() - interval '1 minute'),
           ('{failed}', 'local', 'process', 'provisioning', 2, now())"
    ));
    assert_eq!(round(&scheduler).launches_given_up, 1);
    assert_eq!(status_of(&scheduler, stuck), "terminating");
    assert_eq!(terminate_jobs_for(&scheduler, stuck), 1);
    assert_eq!(status_of(&scheduler, failed), "provisioning");
    scheduler
        .bus
        .publish(&domain::messages::Envelope::new(InstanceLaunchFailed {
            request_id: Uuid::now_v7(),
            instance_id: failed,
            region: "local".into(),
            error: "no free port".into(),
        }))
        .await
        .unwrap();
    scheduler
        .bus
        .publish(&domain::messages::Envelope::new(InstanceTerminated {
            instance_id: stuck,
            request_id: None,
            region: "local".into(),
            reason: "terminated".into(),
        }))
        .await
        .unwrap();
    let heeded = testkit::eventually(Duration::from_secs(10), || async {
        (scheduler.n("SELECT count(*) FROM instances WHERE status = 'terminated' AND terminated_at IS NOT NULL") == 2)
            .then_some(())
    })
    .await;
    assert!(heeded.is_some(), "both are terminated");
}

#[tokio::test]
async fn clients_turned_away_start_a_launch_even_with_no_buffer() {
    let scheduler = start_with(1, |config| {
        manual(config);
        config.scaling_regions =
            r#"{"local":{"buffer":0,"min_instances":0,"max_instances":2,"capacity":2}}"#.into();
    })
    .await;
    assert_eq!(
        round(&scheduler).launched,
        0,
        "nothing asked, nothing launched"
    );
    let (status, _) = scheduler
        .allocate(&scheduler.user(), json!({"region": "local"}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(round(&scheduler).launched, 1, "the refusal asks for one");
    assert_eq!(round(&scheduler).launched, 0, "one is on its way");
    // A region that is not autoscaled never grows.
    let (status, _) = scheduler
        .allocate(&scheduler.user(), json!({"region": "eu"}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(round(&scheduler).launched, 0);
}
