//! The fleet for real: the scheduler keeps a buffer of free slots, the
//! worker launches host-agent processes for it, a client allocates with
//! auth's token and connects to the agent with its connection token, and
//! a killed agent's sessions end while a replacement is launched.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

fn fast(config: &mut instance_scheduling::config::Config) {
    config.scaling_regions =
        r#"{"local":{"buffer":3,"min_instances":1,"max_instances":3,"capacity":2}}"#.into();
    config.heartbeat_interval_secs = 1;
    config.heartbeat_stale_secs = 3;
    config.heartbeat_lost_secs = 6;
    config.reconcile_interval_secs = 1;
    config.scale_down_cooldown_secs = 3600;
}

async fn active_instances(platform: &Platform, url: &str, admin: &Person) -> Vec<Value> {
    let response = platform
        .client
        .get(format!("{url}/api/scheduling/instances?status=active"))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    let page: Value = response.json().await.unwrap();
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launched_agents_serve_clients_and_a_killed_one_is_replaced() {
    let mut platform = spawn().await;
    let (url, worker_db) = platform.start_fleet(fast).await;
    let worker_db = Reaper::new(worker_db, &url);
    let admin = platform.admin().await;
    let user = platform.user().await;

    // A buffer of 3 with capacity 2: two agents are launched and register.
    let fleet = testkit::eventually(Duration::from_secs(30), || async {
        let active = active_instances(&platform, &url, &admin).await;
        (active.len() == 2).then_some(active)
    })
    .await
    .expect("the worker launched two agents that registered");
    for instance in &fleet {
        assert_eq!(instance["provider"], "process");
        assert_eq!(instance["capacity"], 2);
    }

    let response = platform
        .client
        .post(format!("{url}/api/scheduling/sessions"))
        .bearer_auth(&user.token)
        .json(&json!({"region": "local"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let allocated: Value = response.json().await.unwrap();
    let address = allocated["instance"]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let token = allocated["connection_token"].as_str().unwrap().to_string();
    let session = allocated["session_id"].as_str().unwrap().to_string();

    // Request B, on the agent itself.
    let connect = |token: String| {
        let client = platform.client.clone();
        let address = address.clone();
        async move {
            client
                .post(format!("http://{address}/connect"))
                .json(&json!({"connection_token": token}))
                .send()
                .await
                .unwrap()
        }
    };
    let admitted = connect(token.clone()).await;
    assert_eq!(admitted.status(), StatusCode::OK);
    let admitted: Value = admitted.json().await.unwrap();
    assert_eq!(admitted["session_id"], session);
    let again = connect(token).await;
    assert_eq!(again.status(), StatusCode::CONFLICT, "a token works once");
    let shown = session_status(&platform, &url, &user, &session).await;
    assert_eq!(shown["status"], "connected");

    // 3 free still covers the buffer: no third agent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(active_instances(&platform, &url, &admin).await.len(), 2);

    // kill -9 the agent holding the session: its session ends, and with
    // 2 free < 3 a replacement is launched.
    let pid = worker_db.db.count(&format!(
        "SELECT pid::bigint AS n FROM launched_agents WHERE instance_id = '{}'",
        allocated["instance"]["id"].as_str().unwrap()
    ));
    assert!(pid > 0);
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let ended = testkit::eventually(Duration::from_secs(30), || async {
        let shown = session_status(&platform, &url, &user, &session).await;
        (shown["status"] == "ended").then_some(())
    })
    .await;
    assert!(ended.is_some(), "the dead agent's session ended");
    let replaced = testkit::eventually(Duration::from_secs(30), || async {
        let active = active_instances(&platform, &url, &admin).await;
        (active.len() == 2
            && active
                .iter()
                .all(|instance| instance["id"] != allocated["instance"]["id"]))
        .then_some(())
    })
    .await;
    assert!(
        replaced.is_some(),
        "a replacement was launched and registered"
    );
    // The services first, so that nothing launches an agent while the
    // reaper stops the ones there are.
    platform.stop().await;
}

/// After this test process is gone (a test that panicked leaves its
/// services running until then, and they may launch one more agent), a
/// process of its own stops every agent given `scheduler_url`.
// Never waited for: it outlives this process on purpose, and init reaps it.
#[allow(clippy::zombie_processes)]
fn watch_over_agents(scheduler_url: &str) {
    let script = format!(
        "while kill -0 {test} 2>/dev/null; do sleep 1; done; \
         for environ in /proc/[0-9]*/environ; do \
           if tr '\\0' '\\n' 2>/dev/null < \"$environ\" | grep -qx 'SCHEDULER_URL={scheduler_url}'; then \
             pid=${{environ#/proc/}}; kill -TERM \"${{pid%/environ}}\"; \
           fi; \
         done",
        test = std::process::id(),
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the agents' watchdog");
}

/// Stops the agents the worker launched when the test ends, passed or not:
/// they are processes of their own and would outlive it. They are found by
/// the scheduler they were given (unique to the test), so one launched in
/// the test's last moments is found too.
struct Reaper {
    db: testkit::TestDatabase,
    scheduler_url: String,
}

impl Reaper {
    fn new(db: testkit::TestDatabase, scheduler_url: &str) -> Reaper {
        watch_over_agents(scheduler_url);
        Reaper {
            db,
            scheduler_url: scheduler_url.to_string(),
        }
    }

    fn agents(&self) -> Vec<u32> {
        let marker = format!("SCHEDULER_URL={}\0", self.scheduler_url);
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|environ| String::from_utf8_lossy(&environ).contains(&marker))
            })
            .collect()
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let signal = |signal: &str, pid: u32| {
            std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .is_ok_and(|status| status.success())
        };
        // Until none has been seen for two seconds: a launch in flight as
        // the services stopped may still bring one up.
        let mut quiet = 0;
        for _ in 0..60 {
            let pids = self.agents();
            if pids.is_empty() {
                quiet += 1;
                if quiet >= 4 {
                    return;
                }
            } else {
                quiet = 0;
                for pid in &pids {
                    signal("-TERM", *pid);
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

async fn session_status(platform: &Platform, url: &str, user: &Person, session: &str) -> Value {
    platform
        .client
        .get(format!("{url}/api/scheduling/sessions/{session}"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn allocate(platform: &Platform, url: &str, user: &Person) -> Value {
    let response = platform
        .client
        .post(format!("{url}/api/scheduling/sessions"))
        .bearer_auth(&user.token)
        .json(&json!({"region": "local"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn wait_for_active(platform: &Platform, url: &str, admin: &Person, n: usize) -> Vec<Value> {
    testkit::eventually(Duration::from_secs(30), || async {
        let active = active_instances(platform, url, admin).await;
        (active.len() == n).then_some(active)
    })
    .await
    .unwrap_or_else(|| panic!("{n} active instances"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_surplus_is_drained_and_terminated_never_a_busy_agent() {
    let mut platform = spawn().await;
    let (url, worker_db) = platform
        .start_fleet(|config| {
            fast(config);
            config.scaling_regions =
                r#"{"local":{"buffer":2,"min_instances":1,"max_instances":3,"capacity":2}}"#.into();
            config.scale_down_cooldown_secs = 0;
        })
        .await;
    let worker_db = Reaper::new(worker_db, &url);
    let admin = platform.admin().await;
    wait_for_active(&platform, &url, &admin, 1).await;
    // Demand grows the fleet: 1 of 2 used leaves 1 free < 2.
    let (u1, u2, u3) = (
        platform.user().await,
        platform.user().await,
        platform.user().await,
    );
    let first = allocate(&platform, &url, &u1).await;
    wait_for_active(&platform, &url, &admin, 2).await;
    let second = allocate(&platform, &url, &u2).await;
    assert_eq!(
        second["instance"]["id"], first["instance"]["id"],
        "pack fills the fullest that has room"
    );
    let third = allocate(&platform, &url, &u3).await;
    wait_for_active(&platform, &url, &admin, 3).await;
    let busy = first["instance"]["id"].as_str().unwrap().to_string();

    // The third leaves: 4 free slots on two idle agents, 2 more than the
    // buffer needs: one idle agent is drained and its process stopped.
    let response = platform
        .client
        .delete(format!(
            "{url}/api/scheduling/sessions/{}",
            third["session_id"].as_str().unwrap()
        ))
        .bearer_auth(&u3.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let active = wait_for_active(&platform, &url, &admin, 2).await;
    assert!(
        active
            .iter()
            .any(|instance| instance["id"] == busy.as_str()),
        "the busy agent stays"
    );
    let stopped = testkit::eventually(Duration::from_secs(30), || async {
        (worker_db
            .db
            .count("SELECT count(*) AS n FROM launched_agents WHERE state = 'terminated'")
            == 1)
            .then_some(())
    })
    .await;
    assert!(
        stopped.is_some(),
        "the drained agent's process was terminated"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        active_instances(&platform, &url, &admin).await.len(),
        2,
        "no flapping: the buffer is covered"
    );
    platform.stop().await;
}
