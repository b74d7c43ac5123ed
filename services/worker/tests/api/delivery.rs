use crate::helpers::*;
use domain::messages::EmailTemplate;
use std::time::Duration;
use testkit::SmtpSink;

#[tokio::test]
async fn an_email_goes_out_with_both_parts_and_the_right_link() {
    let sink = SmtpSink::start().await.unwrap();
    let worker = smtp_worker(&sink).await;
    worker
        .send(&job(
            "ada@example.com",
            EmailTemplate::PasswordReset,
            &[("display_name", "Ada <3"), ("token", "tok123")],
        ))
        .await;
    let mail = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].to, vec!["ada@example.com"]);
    assert_eq!(mail[0].from, "no-reply@localhost");
    let data = &testkit::smtp::quoted_printable_decoded(&mail[0].data);
    assert!(data.contains("Subject: Reset your password"), "{data}");
    assert!(data.contains("multipart/alternative"));
    assert!(data.contains("text/plain") && data.contains("text/html"));
    assert!(
        data.contains("https://app.example.com/reset-password?token=tok123"),
        "{data}"
    );
    assert!(
        data.contains("Ada &lt;3"),
        "the HTML part escapes values: {data}"
    );
}

#[tokio::test]
async fn temporary_failures_retry_and_then_deliver_once() {
    let sink = SmtpSink::start().await.unwrap();
    sink.script(&[451, 451]);
    let worker = smtp_worker(&sink).await;
    worker.send(&welcome("ada@example.com")).await;
    let mail = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mail.len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.received().len(), 1, "delivered exactly once");
    let metrics = worker.metrics().await;
    assert_eq!(
        metric(&metrics, "email_jobs_total", &[("outcome", "retry")]),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "amqp_messages_total", &[("outcome", "retried")]),
        2.0
    );
    assert!(worker.dead(Duration::from_millis(200)).await.is_none());
}

#[tokio::test]
async fn a_permanent_failure_goes_to_dead_at_once_with_the_reason() {
    let sink = SmtpSink::start().await.unwrap();
    sink.script(&[550]);
    let worker = smtp_worker(&sink).await;
    let envelope = welcome("nobody@example.com");
    worker.send(&envelope).await;
    let dead = worker
        .dead(Duration::from_secs(10))
        .await
        .expect("dead letter");
    assert_eq!(dead.message_id, envelope.id.to_string());
    let reason = dead.headers.0.get("x-error").cloned().unwrap_or_default();
    assert!(reason.contains("550"), "{reason}");
    assert_eq!(
        dead.int_header("x-attempt"),
        Some(1),
        "no retries for a permanent failure"
    );
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn the_last_temporary_failure_parks_the_job() {
    let sink = SmtpSink::start().await.unwrap();
    sink.script(&[451, 451, 451]);
    let worker = smtp_worker(&sink).await;
    worker.send(&welcome("ada@example.com")).await;
    let dead = worker
        .dead(Duration::from_secs(10))
        .await
        .expect("dead letter");
    assert!(dead.headers.0["x-error"].contains("451"));
    assert_eq!(dead.int_header("x-attempt"), Some(3));
}

#[tokio::test]
async fn poison_and_impossible_jobs_are_parked_without_blocking_the_queue() {
    let sink = SmtpSink::start().await.unwrap();
    let worker = smtp_worker(&sink).await;
    let bus = &worker.bus;
    bus.publish_raw(
        "jobs",
        "email",
        "poison-1",
        "email",
        b"not json at all".to_vec(),
    )
    .await
    .unwrap();
    let mut future_version = serde_json::to_value(welcome("ada@example.com")).unwrap();
    future_version["version"] = serde_json::json!(7);
    bus.publish_raw(
        "jobs",
        "email",
        "future-1",
        "email",
        serde_json::to_vec(&future_version).unwrap(),
    )
    .await
    .unwrap();
    let mut unknown_template = serde_json::to_value(welcome("ada@example.com")).unwrap();
    unknown_template["data"]["template"] = serde_json::json!("birthday");
    bus.publish_raw(
        "jobs",
        "email",
        "unknown-1",
        "email",
        serde_json::to_vec(&unknown_template).unwrap(),
    )
    .await
    .unwrap();
    worker
        .send(&job(
            "ada@example.com",
            EmailTemplate::VerifyEmail,
            &[("display_name", "Ada")],
        ))
        .await;
    worker
        .send(&job(
            "not an address",
            EmailTemplate::Welcome,
            &[("display_name", "Ada")],
        ))
        .await;
    worker.send(&welcome("grace@example.com")).await;

    let mut reasons = Vec::new();
    for _ in 0..5 {
        let dead = worker
            .dead(Duration::from_secs(10))
            .await
            .expect("dead letter");
        reasons.push(dead.headers.0.get("x-error").cloned().unwrap_or_default());
    }
    let all = reasons.join(" | ");
    for expected in [
        "malformed",
        "unsupported version",
        "birthday",
        "needs the variable `token`",
        "invalid recipient",
    ] {
        assert!(all.contains(expected), "{expected} not among: {all}");
    }
    let delivered = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].to, vec!["grace@example.com"]);
}

#[tokio::test]
async fn one_idempotency_key_sends_one_email() {
    let sink = SmtpSink::start().await.unwrap();
    let worker = smtp_worker(&sink).await;
    let first = welcome("ada@example.com");
    let mut second = welcome("ada@example.com");
    second.data.idempotency_key = first.data.idempotency_key.clone();
    worker.send(&first).await;
    worker.send(&second).await;
    worker.send(&first).await;
    sink.wait_for(1, Duration::from_secs(10)).await;
    let counted = testkit::eventually(Duration::from_secs(5), || async {
        let text = worker.metrics().await;
        (metric(&text, "email_jobs_total", &[("outcome", "duplicate")]) == 2.0).then_some(())
    })
    .await;
    assert!(counted.is_some());
    assert_eq!(sink.received().len(), 1);
}

/// A claim whose worker died before it began to send (its liveness lock is
/// free, `send_started_at` unset) provably never reached the server: the
/// next delivery takes it over and sends at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_by_a_worker_that_died_before_sending_is_sent_at_once() {
    let sink = SmtpSink::start().await.unwrap();
    let worker = smtp_worker(&sink).await;
    let envelope = welcome("ada@example.com");
    let dead_worker = platform::db::advisory::random_key();
    worker.db.execute(&format!(
        "INSERT INTO sent_emails (idempotency_key, message_id, template, recipient, owner_key) \
         VALUES ('{}', 'earlier', 'welcome', 'ada@example.com', {dead_worker})",
        envelope.data.idempotency_key
    ));

    worker.send(&envelope).await;
    let sent = sink.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(
        sent.len(),
        1,
        "the abandoned claim was not taken over at once"
    );
    assert!(worker.dead(Duration::from_millis(300)).await.is_none());
}

/// A claim made by a worker from before liveness locks (no owner, during
/// a rolling upgrade) cannot tell whether it began to send: it is waited
/// for, never taken over, so the email is not sent a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_from_an_older_worker_is_never_taken_over() {
    let sink = SmtpSink::start().await.unwrap();
    let worker = smtp_worker(&sink).await;
    let envelope = welcome("ada@example.com");
    worker.db.execute(&format!(
        "INSERT INTO sent_emails (idempotency_key, message_id, template, recipient) \
         VALUES ('{}', 'earlier', 'welcome', 'ada@example.com')",
        envelope.data.idempotency_key
    ));
    worker.send(&envelope).await;
    let parked = worker.dead(Duration::from_secs(10)).await;
    assert!(parked.is_some(), "the job was neither sent nor parked");
    assert!(
        sink.received().is_empty(),
        "the older worker's email went out twice"
    );
}

/// A live worker's claim that never began its send within the lease (its
/// attempt failed on the database before the send) is taken over: the job
/// is not stuck behind a worker that will not send it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_workers_claim_that_never_began_is_taken_over_after_its_lease() {
    let sink = SmtpSink::start().await.unwrap();
    let worker = smtp_worker(&sink).await;
    let envelope = welcome("ada@example.com");
    let mut other_worker = platform::db::advisory::LockSession::new(
        worker.db.url(),
        platform::db::advisory::random_key(),
    );
    assert!(other_worker.hold().await.unwrap());
    worker.db.execute(&format!(
        "INSERT INTO sent_emails (idempotency_key, message_id, template, recipient, owner_key, started_at) \
         VALUES ('{}', 'earlier', 'welcome', 'ada@example.com', {}, now() - interval '1 minute')",
        envelope.data.idempotency_key,
        other_worker.key()
    ));
    worker.send(&envelope).await;
    let sent = sink.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(sent.len(), 1, "the stale claim held the job back");
    assert!(
        other_worker.hold().await.unwrap(),
        "the other worker is alive throughout"
    );
}
