//! The worker binary as operators run it: dead-letter commands, a crash in
//! the middle of a send, SIGTERM during a burst.

use crate::helpers::*;
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::{SmtpSink, TestBus, TestDatabase};

fn binary(db: &TestDatabase, bus: &TestBus, sink: &SmtpSink) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .env("AMQP_PREFIX", bus.prefix())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("EMAIL_TRANSPORT", "smtp")
        .env("SMTP_URL", sink.url())
        .env("RETRY_DELAYS_MS", "100,200")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

fn run(command: &mut Command, args: &[&str]) -> String {
    let output = command.args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A worker process that is killed if the test ends before it does, so a
/// failing test leaves no consumer behind.
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl Running {
    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn(db: &TestDatabase, bus: &TestBus, sink: &SmtpSink) -> Running {
    Running(binary(db, bus, sink).stdout(Stdio::null()).spawn().unwrap())
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn publish(bus: &TestBus, envelope: &domain::messages::Envelope<domain::messages::EmailJob>) {
    bus.publish_raw(
        "jobs",
        "email",
        &envelope.id.to_string(),
        "email",
        serde_json::to_vec(envelope).unwrap(),
    )
    .await
    .unwrap();
}

async fn wait_until<F: Fn() -> bool>(timeout: Duration, condition: F) -> bool {
    testkit::eventually(timeout, || async { condition().then_some(()) })
        .await
        .is_some()
}

fn message_ids(sink: &SmtpSink) -> Vec<String> {
    sink.received()
        .iter()
        .filter_map(|m| {
            m.data
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
                .map(|l| l.to_string())
        })
        .collect()
}

// The SMTP sink runs on this test's runtime while the test waits for the
// child process: it needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_jobs_can_be_listed_and_sent_back() {
    let sink = SmtpSink::start().await.unwrap();
    sink.script(&[550]);
    let db = database();
    let bus = TestBus::new();
    track(&bus);
    let mut child = spawn(&db, &bus, &sink);
    let envelope = welcome("ada@example.com");
    publish(&bus, &envelope).await;
    let parked = testkit::eventually(Duration::from_secs(15), || async {
        (bus.count("email.dead").await == 1).then_some(())
    })
    .await;
    assert!(parked.is_some(), "the job was not parked");

    let listing = run(
        &mut binary(&db, &bus, &sink),
        &["dead-letters", "list", "--queue", "email"],
    );
    assert!(listing.contains(&envelope.id.to_string()), "{listing}");
    assert!(listing.contains("550"), "{listing}");
    assert_eq!(bus.count("email.dead").await, 1, "listing removes nothing");

    let requeued = run(
        &mut binary(&db, &bus, &sink),
        &["dead-letters", "requeue", "--queue", "email", "--all"],
    );
    assert!(requeued.contains("requeued 1"), "{requeued}");
    let delivered = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 1, "sent once it was back in the queue");
    assert_eq!(bus.count("email.dead").await, 0);
    signal(&child, "-TERM");
    child.wait().unwrap();
}

// The SMTP sink runs on this test's runtime while the test waits for the
// child process: it needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_the_server_accepted_does_not_send_again() {
    let sink = SmtpSink::start().await.unwrap();
    let db = database();
    let bus = TestBus::new();
    track(&bus);
    let mut first = spawn(&db, &bus, &sink);
    publish(&bus, &welcome("ada@example.com")).await;
    sink.wait_for(1, Duration::from_secs(15)).await;
    signal(&first, "-KILL");
    first.wait().unwrap();

    let mut second = spawn(&db, &bus, &sink);
    // Whatever the broker redelivers is recognised: either it was recorded
    // as sent, or its outcome is unknown and it is parked for an operator.
    let settled = wait_until(Duration::from_secs(15), || true).await;
    assert!(settled);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.received().len(), 1, "the email was not sent twice");
    let queued = bus.count("email").await;
    assert_eq!(queued, 0, "nothing left waiting");
    signal(&second, "-TERM");
    second.wait().unwrap();
}

// The SMTP sink runs on this test's runtime while the test waits for the
// child process: it needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_finishes_in_flight_jobs_and_loses_none() {
    let sink = SmtpSink::start().await.unwrap();
    let db = database();
    let bus = TestBus::new();
    track(&bus);
    bus.count("email").await;
    let jobs: Vec<_> = (0..40)
        .map(|i| welcome(&format!("user{i}@example.com")))
        .collect();
    let mut first = spawn(&db, &bus, &sink);
    for job in &jobs {
        publish(&bus, job).await;
    }
    sink.wait_for(5, Duration::from_secs(15)).await;
    signal(&first, "-TERM");
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(0), "graceful exit");

    // A job could be between attempts (in a delay queue) for a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = sink.received().len() as u32;
    let waiting = bus.count("email").await;
    let parked = bus.count("email.dead").await;
    assert_eq!(
        parked,
        0,
        "{:?}",
        bus.take("email.dead", Duration::from_millis(100))
            .await
            .map(|m| m.headers)
    );
    assert_eq!(
        sent + waiting,
        40,
        "sent {sent} + waiting {waiting}: every job is accounted for"
    );

    let mut second = spawn(&db, &bus, &sink);
    let all = sink.wait_for(40, Duration::from_secs(30)).await;
    assert_eq!(all.len(), 40);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = message_ids(&sink);
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 40, "no job was sent twice");
    assert!(bus
        .take("email.dead", Duration::from_millis(200))
        .await
        .is_none());
    signal(&second, "-TERM");
    second.wait().unwrap();
}
