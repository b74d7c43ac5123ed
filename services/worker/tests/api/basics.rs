use crate::helpers::*;

#[tokio::test]
async fn health_and_metrics() {
    let sink = testkit::SmtpSink::start().await.unwrap();
    let worker = smtp_worker(&sink).await;
    testkit::checks::healthcheck_command_reports(env!("CARGO_BIN_EXE_worker"), &worker.address);
    let ready: serde_json::Value = reqwest::get(format!("{}/api/worker/readyz", worker.address))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["broker"], "ok");
    assert_eq!(ready["checks"]["database"], "ok");
    worker.send(&welcome("ada@example.com")).await;
    sink.wait_for(1, std::time::Duration::from_secs(10)).await;
    // The job is counted when handled, the message once acked, just after.
    let metrics = testkit::eventually(std::time::Duration::from_secs(5), || async {
        let text = worker.metrics().await;
        let sent = metric(
            &text,
            "email_jobs_total",
            &[("template", "welcome"), ("outcome", "sent")],
        );
        let processed = metric(
            &text,
            "amqp_messages_total",
            &[("queue", "email"), ("outcome", "processed")],
        );
        (sent == 1.0 && processed == 1.0).then_some(text)
    })
    .await;
    assert!(
        metrics.is_some(),
        "email_jobs_total and amqp_messages_total did not count the send once each"
    );
    let metrics = metrics.unwrap_or_default();
    assert!(metrics.contains("amqp_handler_duration_seconds_bucket"));
}

#[test]
fn migrations_go_up_down_and_up_again() {
    let db = database();
    let mut conn = db.connect().unwrap();
    platform::db::revert_all(&mut conn, worker::MIGRATIONS).unwrap();
    platform::db::migrate(&mut conn, worker::MIGRATIONS, worker::MIGRATION_LOCK).unwrap();
}

#[test]
fn bus_tables_match_the_bus_crate() {
    testkit::checks::migration_includes_bus_tables(env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn env_example_lists_every_variable() {
    testkit::checks::env_example_lists_config(env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn bad_configuration_stops_with_one_line_naming_the_variable() {
    for (variable, value) in [
        ("EMAIL_TRANSPORT", "pigeon"),
        ("SMTP_URL", "http://x"),
        ("EMAIL_FROM", "not an address"),
        ("EMAIL_CONCURRENCY", "0"),
    ] {
        testkit::checks::bad_setting_is_one_line(env!("CARGO_BIN_EXE_worker"), variable, value);
    }
}

#[tokio::test]
async fn serves_and_documents_its_operational_routes() {
    let sink = testkit::SmtpSink::start().await.unwrap();
    let worker = smtp_worker(&sink).await;
    testkit::checks::serves_platform_routes(&worker.address, worker::startup::PREFIX, "worker")
        .await;
}

#[test]
fn the_committed_api_document_is_the_served_one() {
    testkit::checks::openapi_is_committed(
        env!("CARGO_BIN_EXE_worker"),
        env!("CARGO_MANIFEST_DIR"),
        "worker",
    );
}
