use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn registration_needs_the_secret_before_anything_else() {
    let scheduler = start().await;
    let body = json!({"region": "local", "capacity": 4, "address": "127.0.0.1:9100"});
    for token in ["", "wrong-secret-of-some-length"] {
        let (status, problem) = scheduler
            .call(
                Method::POST,
                "/instances/register",
                token,
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    }
    // A bad body with a bad secret is still 401: the secret comes first.
    let (status, _) = scheduler
        .call(
            Method::POST,
            "/instances/register",
            "wrong-secret-of-some-length",
            Some(json!({"capacity": "lots"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(scheduler.n("SELECT count(*) FROM instances"), 0);

    let agent = scheduler.register("local", 4, "127.0.0.1:9100").await;
    assert_eq!(agent.credential.len(), 43);
    assert_eq!(
        scheduler.n(&format!(
            "SELECT count(*) FROM instances WHERE id = '{}' AND status = 'active' AND capacity = 4",
            agent.id
        )),
        1
    );
    assert_eq!(
        scheduler
            .n("SELECT count(*) FROM instances WHERE credential_hash = convert_to('x', 'UTF8')"),
        0
    );
}

#[tokio::test]
async fn bad_registrations_are_refused_naming_the_field_and_change_nothing() {
    let scheduler = start().await;
    for (body, field) in [
        (
            json!({"region": "local", "capacity": 0, "address": "127.0.0.1:9100"}),
            "capacity",
        ),
        (
            json!({"region": "local", "capacity": 1001, "address": "127.0.0.1:9100"}),
            "capacity",
        ),
        (
            json!({"region": "Local!", "capacity": 4, "address": "127.0.0.1:9100"}),
            "region",
        ),
        (
            json!({"region": "local", "capacity": 4, "address": "nowhere"}),
            "address",
        ),
        (
            json!({"region": "local", "capacity": 4, "address": "127.0.0.1:0"}),
            "address",
        ),
        (
            json!({"region": "local", "capacity": 4, "address": "127.0.0.1:9100", "provider": "A B"}),
            "provider",
        ),
        (
            json!({"region": "local", "capacity": 4, "address": "127.0.0.1:9100", "extra": 1}),
            "extra",
        ),
        (
            json!({"capacity": 4, "address": "127.0.0.1:9100"}),
            "region",
        ),
    ] {
        let (status, problem) = scheduler
            .call(
                Method::POST,
                "/instances/register",
                SECRET,
                Some(body.clone()),
            )
            .await;
        refused_naming(status, &problem, field);
    }
    let (status, _) = scheduler
        .call(
            Method::POST,
            "/instances/register",
            SECRET,
            Some(
                json!({"region": "local", "capacity": 4, "address": "127.0.0.1:9100",
                        "instance_id": uuid::Uuid::now_v7()}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown launch");
    assert_eq!(scheduler.n("SELECT count(*) FROM instances"), 0);
}

#[tokio::test]
async fn an_agent_fulfils_its_launch_once() {
    let scheduler = start().await;
    let launch = uuid::Uuid::now_v7();
    scheduler.sql(&format!(
        "INSERT INTO instances (id, region, provider, status, capacity, created_at)
         VALUES ('{launch}', 'local', 'process', 'provisioning', 2, now() - interval '3 seconds')"
    ));
    let body = json!({"region": "local", "capacity": 2, "address": "127.0.0.1:9101",
                      "instance_id": launch, "provider_ref": "pid:123"});
    let (status, registered) = scheduler
        .call(
            Method::POST,
            "/instances/register",
            SECRET,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    assert_eq!(registered["id"], launch.to_string());
    assert_eq!(registered["heartbeat_interval_secs"], 5);
    assert_eq!(
        scheduler.n(&format!(
            "SELECT count(*) FROM instances WHERE id = '{launch}' AND status = 'active'
             AND address = '127.0.0.1:9101' AND provider = 'process' AND provider_ref = 'pid:123'"
        )),
        1
    );
    let (status, problem) = scheduler
        .call(Method::POST, "/instances/register", SECRET, Some(body))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let metrics = scheduler
        .client
        .get(format!("{}/metrics", scheduler.replicas[0].url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "scheduling_instance_time_to_ready_seconds_count{service=\"instance-scheduling\"} 1"
        ),
        "time to ready is observed for the launch"
    );
}

#[tokio::test]
async fn heartbeats_need_the_instance_s_own_credential() {
    let scheduler = start().await;
    let a = scheduler.register("local", 4, "127.0.0.1:9100").await;
    let b = scheduler.register("local", 4, "127.0.0.1:9101").await;
    let (status, answer) = scheduler.heartbeat(&a, &[]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"drain": false, "terminate": false, "ended": []})
    );
    assert_eq!(
        scheduler.n(&format!(
            "SELECT count(*) FROM instances WHERE id = '{}' AND cpu_pct = 12.5 AND mem_pct = 40",
            a.id
        )),
        1
    );
    // B's credential for A, no credential, a made-up one.
    for credential in [b.credential.as_str(), "", "not-a-credential"] {
        let (status, _) = scheduler
            .call(
                Method::POST,
                &format!("/instances/{}/heartbeat", a.id),
                credential,
                Some(json!({"cpu_pct": 99, "mem_pct": 99, "sessions": []})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        scheduler.n(&format!(
            "SELECT count(*) FROM instances WHERE id = '{}' AND cpu_pct = 99",
            a.id
        )),
        0
    );
    for (body, field) in [
        (
            json!({"cpu_pct": 101, "mem_pct": 1, "sessions": []}),
            "cpu_pct",
        ),
        (
            json!({"cpu_pct": 1, "mem_pct": -1, "sessions": []}),
            "mem_pct",
        ),
        (
            json!({"cpu_pct": 1, "mem_pct": 1, "sessions": ["x"]}),
            "sessions",
        ),
        (json!({"cpu_pct": 1, "mem_pct": 1}), "sessions"),
    ] {
        let (status, problem) = scheduler
            .call(
                Method::POST,
                &format!("/instances/{}/heartbeat", a.id),
                &a.credential,
                Some(body.clone()),
            )
            .await;
        refused_naming(status, &problem, field);
    }
}

#[tokio::test]
async fn a_drained_instance_is_told_so_and_takes_no_new_sessions() {
    let scheduler = start().await;
    let admin = scheduler.admin();
    let user = scheduler.user();
    let agent = scheduler.register("local", 4, "127.0.0.1:9100").await;
    let (status, _) = scheduler
        .call(
            Method::POST,
            &format!("/instances/{}/drain", agent.id),
            &user.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins drain");
    let (status, instance) = scheduler
        .call(
            Method::POST,
            &format!("/instances/{}/drain", agent.id),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{instance}");
    assert_eq!(instance["status"], "draining");
    let (status, again) = scheduler
        .call(
            Method::POST,
            &format!("/instances/{}/drain", agent.id),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "draining twice is draining: {again}"
    );
    let (status, _) = scheduler
        .call(
            Method::POST,
            &format!("/instances/{}/drain", uuid::Uuid::now_v7()),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, answer) = scheduler.heartbeat(&agent, &[]).await;
    assert_eq!(
        answer,
        json!({"drain": true, "terminate": false, "ended": []})
    );
    let (status, problem) = scheduler.allocate(&user, json!({"region": "local"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
}

#[tokio::test]
async fn admins_see_the_fleet_and_every_instance() {
    let scheduler = start().await;
    let admin = scheduler.admin();
    let user = scheduler.user();
    let a = scheduler.register("local", 4, "127.0.0.1:9100").await;
    scheduler.register("eu", 2, "127.0.0.1:9101").await;
    scheduler.sql(
        "INSERT INTO instances (id, region, provider, status, capacity)
         VALUES (gen_random_uuid(), 'eu', 'process', 'provisioning', 2)",
    );
    let (status, _) = scheduler.allocate(&user, json!({"region": "local"})).await;
    assert_eq!(status, StatusCode::CREATED);
    for path in ["/fleet", "/instances"] {
        let (status, _) = scheduler.call(Method::GET, path, &user.token, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path} is for admins");
        let (status, _) = scheduler.call(Method::GET, path, "", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} needs a token");
    }
    let (status, fleet) = scheduler
        .call(Method::GET, "/fleet", &admin.token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        fleet,
        json!({"regions": [
            {"region": "eu", "instances": 1, "capacity": 2, "used": 0, "pending_launches": 1},
            {"region": "local", "instances": 1, "capacity": 4, "used": 1, "pending_launches": 0},
        ]})
    );
    let (status, page) = scheduler
        .call(Method::GET, "/instances", &admin.token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        3,
        "every status: {page}"
    );
    let (_, page) = scheduler
        .call(
            Method::GET,
            "/instances?region=eu&status=provisioning",
            &admin.token,
            None,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    let (_, page) = scheduler
        .call(
            Method::GET,
            "/instances?status=active&region=local",
            &admin.token,
            None,
        )
        .await;
    assert_eq!(page["items"][0]["id"], a.id.to_string());
    assert_eq!(page["items"][0]["active_sessions"], 1);
    for query in ["?status=sleeping", "?region=EU", "?limit=0"] {
        let (status, _) = scheduler
            .call(
                Method::GET,
                &format!("/instances{query}"),
                &admin.token,
                None,
            )
            .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {status}"
        );
    }
}
