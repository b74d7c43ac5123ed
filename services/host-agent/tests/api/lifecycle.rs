use crate::helpers::{start_agent, FakeScheduler, SECRET};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

#[test]
fn env_example_lists_every_variable() {
    testkit::checks::env_example_lists_config(env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn the_committed_api_document_is_the_served_one() {
    testkit::checks::openapi_is_committed(
        env!("CARGO_BIN_EXE_host-agent"),
        env!("CARGO_MANIFEST_DIR"),
        "host-agent",
    );
}

#[test]
fn the_api_document_has_the_client_routes_at_the_root() {
    let api = host_agent::startup::openapi().unwrap();
    let paths: Vec<&String> = api.paths.paths.keys().collect();
    for path in [
        "/connect",
        "/sessions/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            paths.iter().any(|p| p.as_str() == path),
            "{path}: {paths:?}"
        );
    }
}

#[tokio::test]
async fn registers_admits_each_token_once_reports_sessions_and_terminates() {
    let scheduler = FakeScheduler::start().await;
    let agent = start_agent(&scheduler.url, SECRET).await;
    testkit::wait_until_ready(&agent.client, &format!("{}/readyz", agent.url)).await;
    testkit::checks::healthcheck_command_reports(env!("CARGO_BIN_EXE_host-agent"), &agent.url);

    let registration = scheduler.record.lock().unwrap().registrations[0].clone();
    assert_eq!(registration["region"], "local");
    assert_eq!(registration["capacity"], 4);
    assert_eq!(
        registration["address"],
        agent.url.trim_start_matches("http://")
    );
    assert!(registration.get("instance_id").is_none(), "{registration}");

    let session = Uuid::new_v4();
    let token = scheduler.token(session, scheduler.instance);
    let admitted = agent.connect(&token).await;
    assert_eq!(admitted.status(), 200);
    let body: Value = admitted.json().await.unwrap();
    assert_eq!(body["session_id"], session.to_string());

    let again = agent.connect(&token).await;
    assert_eq!(again.status(), 409);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["code"], "already_used");

    let foreign = agent
        .connect(&scheduler.token(Uuid::new_v4(), Uuid::new_v4()))
        .await;
    assert_eq!(foreign.status(), 401);
    assert_eq!(
        foreign
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );

    // The heartbeats carry the session and the machine's load.
    let scheduler = &scheduler;
    let reported = testkit::eventually(Duration::from_secs(5), || async move {
        scheduler
            .last_heartbeat()
            .filter(|beat| beat["sessions"] == json!([session.to_string()]))
    })
    .await
    .expect("a heartbeat with the session");
    for field in ["cpu_pct", "mem_pct"] {
        let pct = reported[field].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&pct), "{reported}");
    }

    // Leaving takes it out of the next heartbeat, even with a token used once.
    let left = agent
        .client
        .delete(format!("{}/sessions/{session}", agent.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 204);
    let emptied = testkit::eventually(Duration::from_secs(5), || async move {
        scheduler
            .last_heartbeat()
            .filter(|beat| beat["sessions"] == json!([]))
    })
    .await;
    assert!(emptied.is_some());

    let metrics = agent.get("/metrics").await.text().await.unwrap();
    for expected in [
        "host_agent_connects_total{",
        "outcome=\"admitted\"",
        "outcome=\"already_used\"",
        "host_agent_heartbeats_total{",
        "host_agent_connected_sessions",
        "host_agent_cpu_percent",
        "host_agent_memory_percent",
    ] {
        assert!(metrics.contains(expected), "{expected}: {metrics}");
    }

    scheduler.record.lock().unwrap().terminate = true;
    let stopped = tokio::time::timeout(Duration::from_secs(10), agent.run)
        .await
        .expect("the agent stops when told to terminate")
        .unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
}

#[tokio::test]
async fn a_draining_agent_still_admits_a_session_allocated_before_the_drain() {
    let scheduler = FakeScheduler::start().await;
    scheduler.record.lock().unwrap().drain = true;
    let agent = start_agent(&scheduler.url, SECRET).await;
    testkit::wait_until_ready(&agent.client, &format!("{}/readyz", agent.url)).await;
    let scheduler = &scheduler;
    // Two heartbeats: the first answer has been applied by the second.
    let beaten = testkit::eventually(Duration::from_secs(5), || async move {
        (scheduler.heartbeat_count() >= 2).then_some(())
    })
    .await;
    assert!(beaten.is_some());
    // The scheduler allocates nothing new on a draining instance; a token
    // presented now is older, and the scheduler's word decides.
    let admitted = agent
        .connect(&scheduler.token(Uuid::new_v4(), scheduler.instance))
        .await;
    assert_eq!(admitted.status(), 200, "the scheduler said yes");
    // Still ready: it serves the sessions it has.
    assert_eq!(agent.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn until_registered_clients_are_told_to_come_back() {
    // A port nobody listens on any more: the scheduler is down.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let agent = start_agent(&down, SECRET).await;
    assert_eq!(agent.get("/healthz").await.status(), 200);
    assert_eq!(agent.get("/readyz").await.status(), 503);
    let refused = agent.connect("whatever.the.token").await;
    testkit::checks::assert_unavailable(refused, "connect before registration").await;
    agent.run.abort();
}

#[tokio::test]
async fn a_refused_registration_stops_the_agent_with_the_reason() {
    let scheduler = FakeScheduler::start().await;
    let wrong = "not-the-registration-secret";
    let agent = start_agent(&scheduler.url, wrong).await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), agent.run)
        .await
        .expect("the agent stops")
        .unwrap();
    let reason = format!("{:#}", outcome.unwrap_err());
    assert!(reason.contains("401"), "{reason}");
    assert!(!reason.contains(wrong), "{reason}");
}

#[tokio::test]
async fn a_session_the_scheduler_ended_is_let_go() {
    let scheduler = FakeScheduler::start().await;
    let agent = start_agent(&scheduler.url, SECRET).await;
    testkit::wait_until_ready(&agent.client, &format!("{}/readyz", agent.url)).await;
    let session = Uuid::new_v4();
    let admitted = agent
        .connect(&scheduler.token(session, scheduler.instance))
        .await;
    assert_eq!(admitted.status(), 200);
    let scheduler = &scheduler;
    let reported = testkit::eventually(Duration::from_secs(5), || async move {
        scheduler
            .last_heartbeat()
            .filter(|beat| beat["sessions"] == json!([session.to_string()]))
    })
    .await;
    assert!(reported.is_some());
    scheduler.record.lock().unwrap().ended = vec![session];
    let let_go = testkit::eventually(Duration::from_secs(5), || async move {
        scheduler
            .last_heartbeat()
            .filter(|beat| beat["sessions"] == json!([]))
    })
    .await;
    assert!(let_go.is_some(), "the next heartbeats leave it out");
}

#[tokio::test]
async fn a_connect_whose_report_lost_its_answer_is_let_in_on_the_retry() {
    let scheduler = FakeScheduler::start().await;
    let agent = start_agent(&scheduler.url, SECRET).await;
    testkit::wait_until_ready(&agent.client, &format!("{}/readyz", agent.url)).await;
    let session = Uuid::new_v4();
    let token = scheduler.token(session, scheduler.instance);
    scheduler.record.lock().unwrap().lose_next_connected_answer = true;
    let first = agent.connect(&token).await;
    assert_eq!(
        first.status(),
        503,
        "the report's outcome is unknown: try again"
    );
    // The scheduler did mark it connected; the retry is the same client.
    let retried = agent.connect(&token).await;
    assert_eq!(retried.status(), 200);
    // And it still works once.
    let again = agent.connect(&token).await;
    assert_eq!(again.status(), 409);
    // Another client with a token already used elsewhere is not let in.
    let other = Uuid::new_v4();
    scheduler.record.lock().unwrap().connected.insert(other);
    let refused = agent
        .connect(&scheduler.token(other, scheduler.instance))
        .await;
    assert_eq!(refused.status(), 409);
}
