use crate::helpers::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn only_admins_list_and_only_admins_and_staff_read_profiles() {
    let platform = spawn().await;
    let admin = platform.admin().await;
    let staff = platform.staff(&admin).await;
    let user = platform.user().await;

    assert_eq!(platform.get("/users", &admin.token).await.status(), 200);
    assert_eq!(
        problem(platform.get("/users", &staff.token).await).await.0,
        403
    );
    assert_eq!(
        problem(platform.get("/users", &user.token).await).await.0,
        403
    );
    assert_eq!(
        problem(
            platform
                .client
                .get(platform.accounts("/users"))
                .send()
                .await
                .unwrap()
        )
        .await
        .0,
        401
    );

    let path = format!("/users/{}", user.id);
    let profile: serde_json::Value = platform
        .get(&path, &admin.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["email"], user.email.as_str());
    assert_eq!(platform.get(&path, &staff.token).await.status(), 200);
    assert_eq!(
        problem(
            platform
                .get(&format!("/users/{}", admin.id), &user.token)
                .await
        )
        .await
        .0,
        403
    );
    assert_eq!(
        problem(
            platform
                .get(&format!("/users/{}", uuid::Uuid::new_v4()), &admin.token)
                .await
        )
        .await
        .0,
        404
    );
    assert_eq!(
        problem(platform.get("/users/not-a-uuid", &admin.token).await)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn admins_change_roles_with_an_event_and_cannot_demote_themselves() {
    let platform = spawn().await;
    let admin = platform.admin().await;
    let user = platform.user().await;
    let mut events = platform
        .bus
        .probe("events", "account.roles_changed")
        .await
        .unwrap();
    let path = format!("/users/{}/roles", user.id);

    let (status, body) = problem(
        platform
            .call(
                Method::PUT,
                &path,
                &admin.token,
                Some(json!({"roles": ["wizard"]})),
            )
            .await,
    )
    .await;
    assert_eq!((status, fields(&body)), (422, vec!["roles[0]".to_string()]));
    let (status, body) = problem(
        platform
            .call(Method::PUT, &path, &admin.token, Some(json!({"roles": []})))
            .await,
    )
    .await;
    assert_eq!(
        (status, fields(&body)),
        (422, vec!["roles".to_string()]),
        "{body}"
    );
    let (status, _) = problem(
        platform
            .call(
                Method::PUT,
                &path,
                &user.token,
                Some(json!({"roles": ["admin"]})),
            )
            .await,
    )
    .await;
    assert_eq!(status, 403, "a user cannot make themselves admin");
    let own = format!("/users/{}/roles", admin.id);
    let (status, _) = problem(
        platform
            .call(
                Method::PUT,
                &own,
                &admin.token,
                Some(json!({"roles": ["user"]})),
            )
            .await,
    )
    .await;
    assert_eq!(status, 403, "an admin cannot drop their own admin role");
    assert!(events.next(Duration::from_millis(300)).await.is_none());

    let response = platform
        .call(
            Method::PUT,
            &path,
            &admin.token,
            Some(json!({"roles": ["staff", "user"]})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let profile: serde_json::Value = response.json().await.unwrap();
    assert_eq!(profile["roles"], json!(["user", "staff"]));
    let event = events
        .next(Duration::from_secs(10))
        .await
        .expect("account.roles_changed");
    assert_eq!(event.json()["data"]["roles"], json!(["user", "staff"]));
    assert!(event.json()["data"]["revision"].as_i64().unwrap() >= 2);

    let again = platform
        .call(
            Method::PUT,
            &path,
            &admin.token,
            Some(json!({"roles": ["user", "staff"]})),
        )
        .await;
    assert_eq!(again.status(), 200);
    assert!(
        events.next(Duration::from_millis(500)).await.is_none(),
        "no change, no event"
    );
}

#[tokio::test]
async fn admins_disable_and_enable_others_but_not_themselves() {
    let platform = spawn().await;
    let admin = platform.admin().await;
    let user = platform.user().await;
    let mut disabled = platform
        .bus
        .probe("events", "account.disabled")
        .await
        .unwrap();

    let own = format!("/users/{}/disable", admin.id);
    assert_eq!(
        problem(platform.call(Method::POST, &own, &admin.token, None).await)
            .await
            .0,
        403
    );
    let path = format!("/users/{}/disable", user.id);
    assert_eq!(
        problem(platform.call(Method::POST, &path, &user.token, None).await)
            .await
            .0,
        403
    );
    let missing = format!("/users/{}/disable", uuid::Uuid::new_v4());
    assert_eq!(
        problem(
            platform
                .call(Method::POST, &missing, &admin.token, None)
                .await
        )
        .await
        .0,
        404
    );

    let response = platform.call(Method::POST, &path, &admin.token, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["status"],
        "disabled"
    );
    assert!(disabled.next(Duration::from_secs(10)).await.is_some());
    assert_eq!(
        platform
            .call(Method::POST, &path, &admin.token, None)
            .await
            .status(),
        200
    );
    assert!(
        disabled.next(Duration::from_millis(500)).await.is_none(),
        "disabling twice emits once"
    );

    let enable = format!("/users/{}/enable", user.id);
    let enabled: serde_json::Value = platform
        .call(Method::POST, &enable, &admin.token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(enabled["status"], "active");
    let filtered: serde_json::Value = platform
        .get("/users?status=disabled", &admin.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["items"].as_array().unwrap().len(), 0);
}
