use crate::helpers::*;

#[tokio::test]
async fn health_docs_and_metrics() {
    let chat = start().await;
    testkit::checks::serves_platform_routes(&chat.replicas[0].url, "/api/chat", "chat").await;
    testkit::checks::healthcheck_command_reports(env!("CARGO_BIN_EXE_chat"), &chat.replicas[0].url);
    let metrics = chat
        .client
        .get(format!("{}/metrics", chat.replicas[0].url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "chat_ws_connections",
        "chat_ws_frames_out_total",
        "chat_live_deliveries_total",
        "chat_ws_slow_reader_disconnects_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

#[test]
fn migrations_go_up_down_and_up_again() {
    let db = chat_database();
    let mut conn = db.connect().unwrap();
    platform::db::revert_all(&mut conn, chat::MIGRATIONS).unwrap();
    platform::db::migrate(&mut conn, chat::MIGRATIONS, chat::MIGRATION_LOCK).unwrap();
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
        ("WS_MAX_FRAME_BYTES", "12"),
        ("WS_SEND_QUEUE", "0"),
        ("WS_PING_SECS", "600"),
        ("REPLICA_EXPIRY_SECS", "1"),
        ("PRESENCE_GRACE_SECS", "soon"),
    ] {
        testkit::checks::bad_setting_is_one_line(env!("CARGO_BIN_EXE_chat"), variable, value);
    }
}

#[test]
fn the_committed_api_document_is_the_served_one() {
    testkit::checks::openapi_is_committed(
        env!("CARGO_BIN_EXE_chat"),
        env!("CARGO_MANIFEST_DIR"),
        "chat",
    );
}
