//! Auth's emails, delivered for real: registration queues `verify_email`,
//! the worker writes it to the file outbox, its link verifies the address.

use crate::helpers::*;
use secrecy::SecretString;
use std::time::Duration;

#[tokio::test]
async fn the_verification_email_from_auth_arrives_with_a_working_link() {
    let bus = testkit::TestBus::new();
    let (_worker, _worker_db, outbox) = file_worker(&bus).await;
    let auth_db = auth_database();
    let mut auth_config = auth::config::Config::defaults().unwrap();
    auth_config.common.host = "127.0.0.1".into();
    auth_config.port = 0;
    auth_config.database_url = SecretString::from(auth_db.url().to_string());
    auth_config.common.amqp_prefix = bus.prefix().to_string();
    auth_config.argon2_memory_kib = 64;
    auth_config.argon2_iterations = 1;
    auth_config.common.retry_delays_ms = "100".into();
    bus.track_topology(&auth::topology(vec![Duration::from_millis(100)]));
    let auth_app = auth::startup::Application::build(auth_config)
        .await
        .unwrap();
    let auth_url = format!("http://127.0.0.1:{}/api/auth", auth_app.port());
    tokio::spawn(auth_app.run_until_stopped());

    let client = reqwest::Client::new();
    let registered = client
        .post(format!("{auth_url}/register"))
        .json(&serde_json::json!({"email": "ada@example.com", "password": "correct horse battery", "display_name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);

    let eml = testkit::eventually(Duration::from_secs(15), || async {
        let entry = std::fs::read_dir(&outbox)
            .ok()?
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "eml"))?;
        std::fs::read_to_string(entry.path()).ok()
    })
    .await
    .expect("an .eml file in the outbox");
    assert!(eml.contains("To: ada@example.com"), "{eml}");
    let unfolded = testkit::smtp::quoted_printable_decoded(&eml);
    let link_start = unfolded
        .find("https://app.example.com/verify-email?token=")
        .expect("link in the email");
    let token: String = unfolded[link_start..]
        .trim_start_matches("https://app.example.com/verify-email?token=")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert_eq!(token.len(), 43, "{token}");

    let verified = client
        .post(format!("{auth_url}/verify-email"))
        .json(&serde_json::json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        verified.status(),
        204,
        "the link's token verifies the address"
    );
    let _ = std::fs::remove_dir_all(&outbox);
}
