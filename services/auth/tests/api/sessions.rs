use crate::helpers::*;

#[tokio::test]
async fn sessions_lists_the_callers_live_sessions() {
    let app = spawn_app().await;
    let email = unique_email();
    let (_, access, _) = app.signed_in_user(&email).await;
    let second = app.login_with(&new_client(), &email, PASSWORD).await;
    assert_eq!(second.status(), 200);
    let (_, other_access, _) = app.signed_in_user(&unique_email()).await;

    let body = app.get_json("/sessions", &access).await;
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "another user's session is not listed");
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);
    assert_eq!(body["next_cursor"], serde_json::Value::Null);
    for field in ["id", "created_at", "last_used_at", "user_agent", "ip"] {
        assert!(items[0].get(field).is_some(), "{field}");
    }

    let page = app.get_json("/sessions?limit=1", &access).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = app
        .get_json(&format!("/sessions?limit=1&cursor={cursor}"), &access)
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_ne!(rest["items"][0]["id"], page["items"][0]["id"]);

    let (status, _, problem_body) =
        problem(app.get_authorized("/sessions?limit=0", &access).await).await;
    assert_eq!(
        (status, fields(&problem_body)),
        (422, vec!["limit".to_string()])
    );
    let others = app.get_json("/sessions", &other_access).await;
    assert_eq!(others["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_session_can_be_revoked_only_by_its_owner() {
    let app = spawn_app().await;
    let email = unique_email();
    let (_, access, _) = app.signed_in_user(&email).await;
    let other_device = new_client();
    app.login_with(&other_device, &email, PASSWORD).await;
    let (_, intruder, _) = app.signed_in_user(&unique_email()).await;

    let body = app.get_json("/sessions", &access).await;
    let target = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let foreign = app
        .client
        .delete(app.url(&format!("/sessions/{target}")))
        .bearer_auth(&intruder)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(foreign).await.0, 404);
    let bad_id = app
        .client
        .delete(app.url("/sessions/not-a-uuid"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(bad_id).await.0, 404);

    let revoked = app
        .client
        .delete(app.url(&format!("/sessions/{target}")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(app.refresh_with(&other_device).await.status(), 401);
}

#[tokio::test]
async fn logout_ends_this_session_and_logout_all_ends_every_one() {
    let app = spawn_app().await;
    let email = unique_email();
    let (laptop, laptop_access, _) = app.signed_in_user(&email).await;
    let phone = new_client();
    let phone_login: serde_json::Value = app
        .login_with(&phone, &email, PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let tablet = new_client();
    app.login_with(&tablet, &email, PASSWORD).await;

    // Logout by cookie.
    let out = laptop.post(app.url("/logout")).send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(app.refresh_with(&laptop).await.status(), 401);
    assert_eq!(
        app.get_authorized("/sessions", &laptop_access)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.refresh_with(&phone).await.status(),
        200,
        "other sessions live on"
    );

    // Logout by bearer.
    let phone_access = phone_login["access_token"].as_str().unwrap();
    let out = reqwest::Client::new()
        .post(app.url("/logout"))
        .bearer_auth(phone_access)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(app.refresh_with(&phone).await.status(), 401);

    // Neither: nothing to log out.
    assert_eq!(
        problem(
            reqwest::Client::new()
                .post(app.url("/logout"))
                .send()
                .await
                .unwrap()
        )
        .await
        .0,
        401
    );

    // Logout everywhere.
    let fresh: serde_json::Value = app
        .login_with(&new_client(), &email, PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let all = reqwest::Client::new()
        .post(app.url("/logout-all"))
        .bearer_auth(fresh["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), 204);
    assert_eq!(app.refresh_with(&tablet).await.status(), 401);
    assert_eq!(
        problem(
            reqwest::Client::new()
                .post(app.url("/logout-all"))
                .send()
                .await
                .unwrap()
        )
        .await
        .0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_listings_each_see_only_their_callers_sessions() {
    let app = std::sync::Arc::new(spawn_app().await);
    let mut users = Vec::new();
    for sessions in 1..=4 {
        let email = unique_email();
        let (_, access, user_id) = app.signed_in_user(&email).await;
        for _ in 1..sessions {
            let login = app.login_with(&new_client(), &email, PASSWORD).await;
            assert_eq!(login.status(), 200);
        }
        users.push((access, user_id, sessions));
    }
    let own_sessions = |user_id: &str| {
        app.count(&format!(
            "SELECT count(*) AS n FROM sessions WHERE user_id = '{user_id}'"
        ))
    };
    for (_, user_id, sessions) in &users {
        assert_eq!(own_sessions(user_id), *sessions);
    }

    // Many listings at once, so that they are read together.
    let listings: Vec<_> = (0..64)
        .map(|i| {
            let app = app.clone();
            let (access, user_id, sessions) = users[i % users.len()].clone();
            let limit = if i % 2 == 0 { 50 } else { 2 };
            tokio::spawn(async move {
                let body = app
                    .get_json(&format!("/sessions?limit={limit}"), &access)
                    .await;
                (user_id, sessions, limit, body)
            })
        })
        .collect();
    for listing in listings {
        let (user_id, sessions, limit, body) = listing.await.unwrap();
        let ids: Vec<String> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len() as i64, sessions.min(limit), "{body}");
        let theirs = app.count(&format!(
            "SELECT count(*) AS n FROM sessions WHERE user_id = '{user_id}' AND id IN ('{}')",
            ids.join("','")
        ));
        assert_eq!(theirs, ids.len() as i64, "only the caller's own sessions");
        let mut newest_first = ids.clone();
        newest_first.sort_by(|a, b| b.cmp(a));
        assert_eq!(ids, newest_first);
        assert_eq!(body["next_cursor"].is_string(), sessions > limit);
    }
}
