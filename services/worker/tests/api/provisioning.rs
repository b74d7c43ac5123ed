//! The provisioning queue with the process provider: real host-agent
//! processes (the workspace's own binary), started, supervised and
//! terminated, each request done once.

use crate::helpers::*;
use domain::messages::{Envelope, ProvisioningAction, ProvisioningJob};
use std::path::PathBuf;
use std::time::Duration;
use testkit::TestBus;
use uuid::Uuid;

const SECRET: &str = "registration-secret-for-tests";

/// The host-agent binary the workspace built beside this test's own.
fn agent_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")));
    let binary = target.join("debug").join("host-agent");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace (cargo build -p host-agent)",
        binary.display()
    );
    binary
}

/// Ten ports of their own for this test, so tests in parallel do not meet.
fn ports() -> (u16, String) {
    let base = 30_000 + (Uuid::new_v4().as_u128() % 2_000) as u16 * 10;
    (base, format!("{base}-{}", base + 9))
}

async fn provisioning_worker(binary: Option<PathBuf>) -> (Worker, u16) {
    let db = database();
    let bus = TestBus::new();
    let mut config = config(&db, &bus, None);
    config.registration_secret = Some(SECRET.to_string().into());
    config.host_agent_bin = Some(binary.unwrap_or_else(agent_binary).display().to_string());
    let (base, range) = ports();
    config.host_agent_ports = range;
    // Nobody listens there: the agents keep trying to register, and run.
    config.scheduler_url = "http://127.0.0.1:9".into();
    (start(config, db, bus).await, base)
}

async fn send(worker: &Worker, job: ProvisioningJob) {
    let envelope = Envelope::new(job);
    worker
        .bus
        .publish_raw(
            "jobs",
            "provisioning",
            &envelope.id.to_string(),
            "provisioning",
            serde_json::to_vec(&envelope).unwrap(),
        )
        .await
        .unwrap();
}

fn launch(request_id: Uuid, instance_id: Uuid) -> ProvisioningJob {
    ProvisioningJob {
        request_id,
        action: ProvisioningAction::Launch,
        region: "local".into(),
        instance_id: Some(instance_id),
        capacity: Some(2),
    }
}

fn terminate(request_id: Uuid, instance_id: Uuid) -> ProvisioningJob {
    ProvisioningJob {
        request_id,
        action: ProvisioningAction::Terminate,
        region: "local".into(),
        instance_id: Some(instance_id),
        capacity: None,
    }
}

fn pid_of(worker: &Worker, instance: Uuid) -> i64 {
    worker.db.count(&format!(
        "SELECT COALESCE((SELECT pid FROM launched_agents WHERE instance_id = '{instance}' AND state = 'running'), 0)::bigint AS n"
    ))
}

fn alive(pid: i64) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .status()
        .is_ok_and(|status| status.success())
}

async fn running(worker: &Worker, instance: Uuid) -> i64 {
    testkit::eventually(Duration::from_secs(15), || async {
        let pid = pid_of(worker, instance);
        (pid > 0).then_some(pid)
    })
    .await
    .expect("the agent runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_launched_once_served_and_terminated_with_an_event() {
    let (worker, base) = provisioning_worker(None).await;
    let mut terminated = worker
        .bus
        .probe("events", "instance.terminated")
        .await
        .unwrap();
    let (request, instance) = (Uuid::now_v7(), Uuid::now_v7());
    send(&worker, launch(request, instance)).await;
    let pid = running(&worker, instance).await;
    assert!(alive(pid));
    let port = worker.db.count(&format!(
        "SELECT port::bigint AS n FROM launched_agents WHERE instance_id = '{instance}'"
    ));
    assert!((i64::from(base)..i64::from(base) + 10).contains(&port));
    let health = testkit::eventually(Duration::from_secs(10), || async {
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .ok()
            .filter(|response| response.status().is_success())
    })
    .await;
    assert!(health.is_some(), "the agent serves on its port");

    // The same request again (a redelivery): nothing repeated.
    send(&worker, launch(request, instance)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        worker.db.count("SELECT count(*) AS n FROM launched_agents"),
        1
    );
    assert_eq!(pid_of(&worker, instance), pid);

    let stop = Uuid::now_v7();
    send(&worker, terminate(stop, instance)).await;
    let event = terminated
        .next(Duration::from_secs(20))
        .await
        .expect("instance.terminated");
    let event = event.json();
    assert_eq!(event["data"]["instance_id"], instance.to_string());
    assert_eq!(event["data"]["request_id"], stop.to_string());
    assert!(!alive(pid), "SIGTERM stopped it");
    assert_eq!(
        worker.db.count(&format!(
            "SELECT count(*) AS n FROM launched_agents WHERE instance_id = '{instance}' AND state = 'terminated'"
        )),
        1
    );
    // Terminating again answers again, and signals nothing.
    send(&worker, terminate(Uuid::now_v7(), instance)).await;
    let again = terminated
        .next(Duration::from_secs(10))
        .await
        .expect("answered");
    assert_eq!(again.json()["data"]["instance_id"], instance.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_dies_is_reported_and_a_launch_that_cannot_start_fails() {
    let (worker, _) = provisioning_worker(None).await;
    let mut terminated = worker
        .bus
        .probe("events", "instance.terminated")
        .await
        .unwrap();
    let instance = Uuid::now_v7();
    send(&worker, launch(Uuid::now_v7(), instance)).await;
    let pid = running(&worker, instance).await;
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let event = terminated
        .next(Duration::from_secs(20))
        .await
        .expect("reported");
    let event = event.json();
    assert_eq!(event["data"]["instance_id"], instance.to_string());
    assert!(event["data"]["reason"].as_str().unwrap().contains("exited"));
    assert_eq!(event["data"].get("request_id"), None);

    let (broken, _) = provisioning_worker(Some(PathBuf::from("/nonexistent/host-agent"))).await;
    let mut failed = broken
        .bus
        .probe("events", "instance.launch_failed")
        .await
        .unwrap();
    let doomed = Uuid::now_v7();
    send(&broken, launch(Uuid::now_v7(), doomed)).await;
    let event = failed
        .next(Duration::from_secs(20))
        .await
        .expect("instance.launch_failed");
    let event = event.json();
    assert_eq!(event["data"]["instance_id"], doomed.to_string());
    assert!(event["data"]["error"]
        .as_str()
        .unwrap()
        .contains("cannot start"));
}
