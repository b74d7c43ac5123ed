//! Real host-agent processes (the workspace's binary) against a
//! scheduler: registration, request B, a token for another host, kill -9
//! (stale, then unresponsive, its session ended) and SIGTERM (exit 0).

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

fn agent_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")));
    let binary = target.join("debug").join("host-agent");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace",
        binary.display()
    );
    binary
}

/// A host agent process; killed when dropped, so none outlives a test.
struct AgentProcess {
    child: std::process::Child,
    address: String,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_agent(scheduler: &Scheduler) -> AgentProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let child = std::process::Command::new(agent_binary())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SCHEDULER_URL", &scheduler.replicas[0].url)
        .env("REGISTRATION_SECRET", SECRET)
        .env("REGION", "local")
        .env("CAPACITY", "2")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("ADVERTISE_ADDRESS", &address)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    AgentProcess { child, address }
}

async fn registered(scheduler: &Scheduler, address: &str) -> String {
    testkit::eventually(Duration::from_secs(15), || async {
        let n = scheduler.n(&format!(
            "SELECT count(*) FROM instances WHERE address = '{address}' AND status = 'active'"
        ));
        (n == 1).then_some(())
    })
    .await
    .expect("the agent registered");
    let mut conn = scheduler.db.connect().unwrap();
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    diesel::sql_query(format!(
        "SELECT id::text AS id FROM instances WHERE address = '{address}'"
    ))
    .get_result::<Id>(&mut conn)
    .unwrap()
    .id
}

async fn connect(scheduler: &Scheduler, address: &str, token: &str) -> StatusCode {
    scheduler
        .client
        .post(format!("http://{address}/connect"))
        .json(&json!({"connection_token": token}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agents_admit_once_refuse_foreign_tokens_and_a_killed_one_is_given_up() {
    let scheduler = start_with(1, |config| {
        config.heartbeat_interval_secs = 1;
        config.heartbeat_stale_secs = 2;
        config.heartbeat_lost_secs = 4;
        config.reconcile_interval_secs = 1;
    })
    .await;
    let mut a = spawn_agent(&scheduler);
    let b = spawn_agent(&scheduler);
    let a_id = registered(&scheduler, &a.address).await;
    let b_id = registered(&scheduler, &b.address).await;

    let user = scheduler.user();
    let (status, allocated) = scheduler.allocate(&user, json!({"region": "local"})).await;
    assert_eq!(status, StatusCode::CREATED, "{allocated}");
    let token = allocated["connection_token"].as_str().unwrap().to_string();
    let (holder, other) = if allocated["instance"]["id"] == a_id.as_str() {
        (&a.address, &b.address)
    } else {
        (&b.address, &a.address)
    };
    assert_eq!(
        connect(&scheduler, other, &token).await,
        StatusCode::UNAUTHORIZED,
        "another host refuses the token"
    );
    assert_eq!(connect(&scheduler, holder, &token).await, StatusCode::OK);
    assert_eq!(
        connect(&scheduler, holder, &token).await,
        StatusCode::CONFLICT,
        "a token works once"
    );
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        connect(&scheduler, holder, &tampered).await,
        StatusCode::UNAUTHORIZED
    );
    let session = session_of(&allocated);
    // The agent's heartbeats keep the connected session.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        scheduler.n(&format!(
            "SELECT count(*) FROM sessions WHERE id = '{session}' AND status = 'connected'"
        )),
        1
    );

    // kill -9 the holder: stale first (no new sessions there), then
    // unresponsive with its session ended.
    let (killed_id, survivor_id) = if holder == &a.address {
        a.child.kill().unwrap();
        (a_id.clone(), b_id.clone())
    } else {
        // b is not mut; kill through its pid.
        std::process::Command::new("kill")
            .args(["-9", &b.child.id().to_string()])
            .status()
            .unwrap();
        (b_id.clone(), a_id.clone())
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..2 {
        let (status, body) = scheduler
            .allocate(&scheduler.user(), json!({"region": "local"}))
            .await;
        if status == StatusCode::CREATED {
            assert_eq!(
                body["instance"]["id"],
                survivor_id.as_str(),
                "never the stale one"
            );
        }
    }
    let given_up = testkit::eventually(Duration::from_secs(15), || async {
        (scheduler.n(&format!(
            "SELECT count(*) FROM instances WHERE id = '{killed_id}' AND status = 'unresponsive'"
        )) == 1)
            .then_some(())
    })
    .await;
    assert!(given_up.is_some(), "the killed agent is unresponsive");
    assert_eq!(
        scheduler.n(&format!(
            "SELECT count(*) FROM sessions WHERE id = '{session}' AND status = 'ended'"
        )),
        1,
        "its session ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_exits_0_on_sigterm() {
    let scheduler = start().await;
    let mut agent = spawn_agent(&scheduler);
    registered(&scheduler, &agent.address).await;
    std::process::Command::new("kill")
        .args(["-TERM", &agent.child.id().to_string()])
        .status()
        .unwrap();
    let status = testkit::eventually(Duration::from_secs(15), || {
        let exited = agent.child.try_wait().unwrap();
        async move { exited }
    })
    .await
    .expect("it exits");
    assert_eq!(status.code(), Some(0));
}
