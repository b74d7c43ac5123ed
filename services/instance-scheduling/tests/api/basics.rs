use crate::helpers::*;

#[tokio::test]
async fn health_docs_and_metrics() {
    let scheduler = start().await;
    testkit::checks::serves_platform_routes(
        &scheduler.replicas[0].url,
        "/api/scheduling",
        "instance-scheduling",
    )
    .await;
    testkit::checks::healthcheck_command_reports(
        env!("CARGO_BIN_EXE_instance-scheduling"),
        &scheduler.replicas[0].url,
    );
    let metrics = scheduler
        .client
        .get(format!("{}/metrics", scheduler.replicas[0].url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "scheduling_allocation_seconds",
        "scheduling_instance_time_to_ready_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

#[test]
fn migrations_go_up_down_and_up_again() {
    let db = database();
    let mut conn = db.connect().unwrap();
    platform::db::revert_all(&mut conn, instance_scheduling::MIGRATIONS).unwrap();
    platform::db::migrate(
        &mut conn,
        instance_scheduling::MIGRATIONS,
        instance_scheduling::MIGRATION_LOCK,
    )
    .unwrap();
}

#[test]
fn shared_tables_match_their_crates() {
    testkit::checks::migration_includes_bus_tables(env!("CARGO_MANIFEST_DIR"));
    testkit::checks::migration_includes_signing_keys(env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn env_example_lists_every_variable() {
    testkit::checks::env_example_lists_config(env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn bad_configuration_stops_with_one_line_naming_the_variable() {
    for (variable, value) in [
        ("REGISTRATION_SECRET", " "),
        ("PORT", "eighty"),
        ("AUTH_JWKS_URL", "ftp://nowhere"),
        ("HEARTBEAT_STALE_SECS", "1"),
        ("HEARTBEAT_LOST_SECS", "5"),
        ("ALLOCATION_STRATEGY", "fastest"),
        ("MAX_SESSIONS_PER_USER", "0"),
        ("REGION_FALLBACK", "[eu]"),
        ("REGION_FALLBACK", "{\"EU\":[\"us\"]}"),
        ("SCALING_REGIONS", "{\"local\":{\"buffer\":1}}"),
        (
            "SCALING_REGIONS",
            "{\"local\":{\"buffer\":1,\"min_instances\":3,\"max_instances\":2,\"capacity\":4}}",
        ),
    ] {
        testkit::checks::bad_setting_is_one_line(
            env!("CARGO_BIN_EXE_instance-scheduling"),
            variable,
            value,
        );
    }
}

#[test]
fn the_committed_api_document_is_the_served_one() {
    testkit::checks::openapi_is_committed(
        env!("CARGO_BIN_EXE_instance-scheduling"),
        env!("CARGO_MANIFEST_DIR"),
        "instance-scheduling",
    );
}
