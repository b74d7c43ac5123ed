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

/// Runs a one-shot command, which must succeed and log no error.
fn run(command: &mut Command, args: &[&str]) -> String {
    let output = command.args(args).stderr(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    assert!(
        !stderr.contains("ERROR"),
        "{args:?} logged errors: {stderr}"
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

fn sent_count(db: &TestDatabase) -> i64 {
    db.count("SELECT count(*) AS n FROM sent_emails WHERE sent_at IS NOT NULL")
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
    // The redelivery is recognised: either the first worker recorded the
    // send (the job is then acked as a duplicate), or it died between the
    // server's answer and that record, and the job is parked as outcome
    // unknown for an operator. Never sent again.
    let settled = testkit::eventually(Duration::from_secs(15), || async {
        let parked = bus.count("email.dead").await;
        let waiting = bus.count("email").await;
        (parked == 1 || (sent_count(&db) == 1 && waiting == 0)).then_some(parked)
    })
    .await;
    assert!(settled.is_some(), "the redelivered job was never settled");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.received().len(), 1, "the email was sent twice");
    assert_eq!(bus.count("email").await, 0, "nothing left waiting");
    if settled == Some(1) {
        let letter = bus
            .take("email.dead", Duration::from_secs(1))
            .await
            .unwrap();
        let reason = letter
            .headers
            .0
            .get(bus::headers::ERROR)
            .cloned()
            .unwrap_or_default();
        assert!(reason.contains("outcome unknown"), "{reason}");
    } else {
        assert_eq!(bus.count("email.dead").await, 0);
    }
    signal(&second, "-TERM");
    second.wait().unwrap();
}

// The SMTP sink runs on this test's runtime while the test waits for the
// child process: it needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_inside_the_smtp_transaction_parks_the_job_at_once() {
    let sink = SmtpSink::start().await.unwrap();
    sink.stall(true);
    let db = database();
    let bus = TestBus::new();
    track(&bus);
    let mut first = spawn(&db, &bus, &sink);
    publish(&bus, &welcome("ada@example.com")).await;
    let inside = testkit::eventually(Duration::from_secs(15), || async {
        (sink.stalled() == 1).then_some(())
    })
    .await;
    assert!(inside.is_some(), "the send never reached the end of DATA");
    signal(&first, "-KILL");
    first.wait().unwrap();
    sink.stall(false);

    let killed_at = std::time::Instant::now();
    let second = start(config(&db, &bus, Some(&sink)), db, bus).await;
    let letter = second.dead(Duration::from_secs(15)).await;
    let letter = letter.expect("the job was not parked");
    let reason = letter
        .headers
        .0
        .get(bus::headers::ERROR)
        .cloned()
        .unwrap_or_default();
    assert!(reason.contains("outcome unknown"), "{reason}");
    assert!(
        killed_at.elapsed() < Duration::from_secs(15),
        "parked after {:?}",
        killed_at.elapsed()
    );
    assert!(
        sink.received().is_empty(),
        "the held message counted as sent"
    );
    let counted = testkit::eventually(Duration::from_secs(5), || async {
        let text = second.metrics().await;
        (metric(&text, "email_jobs_total", &[("outcome", "outcome_unknown")]) == 1.0).then_some(())
    })
    .await;
    assert!(
        counted.is_some(),
        "email_jobs_total did not count the unknown outcome"
    );
}

// The SMTP sink runs on this test's runtime while the test waits for the
// child process: it needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_finishes_in_flight_jobs_and_loses_none() {
    let sink = SmtpSink::start().await.unwrap();
    let db = database();
    let bus = TestBus::new();
    track(&bus);
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
