//! Events accounts consumes, as auth publishes them.

use crate::helpers::*;
use std::time::Duration;

#[tokio::test]
async fn a_redelivered_registration_creates_one_profile() {
    let platform = spawn().await;
    let event = domain::messages::Envelope::new(domain::messages::UserRegistered {
        user_id: uuid::Uuid::new_v4(),
        email: Some(unique_email()),
        display_name: "Twice".into(),
        roles: vec![domain::Role::User],
        kind: domain::messages::UserKind::Registered,
    });
    platform.bus.publish(&event).await.unwrap();
    platform.bus.publish(&event).await.unwrap();
    platform
        .wait_for_profile(&event.data.user_id.to_string())
        .await;
    let settled = testkit::eventually(Duration::from_secs(10), || async {
        (platform.count("SELECT count(*) AS n FROM processed_messages") == 1).then_some(())
    })
    .await;
    assert!(settled.is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        platform.count("SELECT count(*) AS n FROM profiles WHERE display_name = 'Twice'"),
        1
    );
}
