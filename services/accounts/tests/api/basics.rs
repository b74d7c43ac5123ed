use crate::helpers::*;

#[tokio::test]
async fn health_docs_and_metrics() {
    let platform = spawn().await;
    testkit::checks::serves_platform_routes(&platform.accounts_url, "/api/accounts", "accounts")
        .await;
    testkit::checks::healthcheck_command_reports(
        env!("CARGO_BIN_EXE_accounts"),
        &platform.accounts_url,
    );
}

#[test]
fn migrations_go_up_down_and_up_again() {
    let db = accounts_database();
    let mut conn = db.connect().unwrap();
    platform::db::revert_all(&mut conn, accounts::MIGRATIONS).unwrap();
    platform::db::migrate(&mut conn, accounts::MIGRATIONS, accounts::MIGRATION_LOCK).unwrap();
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
        ("AUTH_JWKS_URL", "ftp://nowhere"),
        ("PORT", "eighty"),
        ("DATABASE_POOL_SIZE", "0"),
        ("SEARCH_CONCURRENCY", "0"),
        ("SEARCH_CONCURRENCY", "many"),
    ] {
        testkit::checks::bad_setting_is_one_line(env!("CARGO_BIN_EXE_accounts"), variable, value);
    }
}

/// `accounts migrate` leaves the queue in place, so events published by
/// services started after a deploy's migrations wait for accounts.
#[tokio::test]
async fn migrate_declares_the_services_queues() {
    let db = accounts_database();
    let bus = testkit::TestBus::new();
    bus.track_topology(&accounts::topology(vec![std::time::Duration::from_secs(1)]));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_accounts"))
        .arg("migrate")
        .env("DATABASE_URL", db.url())
        .env("AMQP_PREFIX", bus.prefix())
        .env("RETRY_DELAYS_MS", "1000")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("broker topology declared"), "{stdout}");
    let queue = bus.names().physical(accounts::consumers::QUEUE);
    assert!(bus.queue_exists(&queue).await, "{queue} is missing");
}

#[test]
fn the_committed_api_document_is_the_served_one() {
    testkit::checks::openapi_is_committed(
        env!("CARGO_BIN_EXE_accounts"),
        env!("CARGO_MANIFEST_DIR"),
        "accounts",
    );
}
