//! `auth create-admin`: the first administrator, created like every other
//! user (one row, one `user.registered`) but verified and with the admin role.

use crate::helpers::*;
use domain::{DisplayName, Email, Password};

#[tokio::test]
async fn create_admin_makes_a_verified_admin_and_announces_it_once() {
    let app = spawn_app().await;
    let email = unique_email();
    let create = || {
        auth::cli::create_admin(
            app.config.clone(),
            Email::parse(&email).unwrap(),
            DisplayName::parse("Root").unwrap(),
            Password::parse(PASSWORD).unwrap(),
        )
    };
    let id = create().await.unwrap();
    assert!(create().await.is_err(), "a second admin with one email");

    let response = app.login_with(&new_client(), &email, PASSWORD).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], id.to_string());
    assert_eq!(body["user"]["roles"], serde_json::json!(["user", "admin"]));
    assert_eq!(body["user"]["email_verified"], true);

    let announced = app.count(&format!(
        "SELECT count(*) AS n FROM outbox WHERE message_type = 'user.registered' \
         AND payload->'data'->>'user_id' = '{id}' AND payload->'data'->>'kind' = 'admin'"
    ));
    assert_eq!(announced, 1);
}
