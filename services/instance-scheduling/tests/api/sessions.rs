use crate::helpers::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// The connection token's claims, verified against the scheduler's JWKS
/// as a host agent would (EdDSA only, audience = the instance).
async fn verified_claims(scheduler: &Scheduler, token: &str, instance: &str) -> Value {
    let jwks: Value = scheduler
        .client
        .get(scheduler.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("connection+jwt"));
    let kid = header.kid.unwrap();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == kid.as_str())
        .expect("the token's key is published");
    let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[instance]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_ed_der(&x), &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn a_session_goes_to_a_fresh_instance_with_a_token_for_it_alone() {
    let scheduler = start().await;
    let agent = scheduler.register("local", 4, "127.0.0.1:9100").await;
    let user = scheduler.user();
    let (status, allocated) = scheduler
        .allocate(&user, json!({"region": "local", "app": "editor"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{allocated}");
    assert_eq!(allocated["instance"]["id"], agent.id.to_string());
    assert_eq!(allocated["instance"]["region"], "local");
    assert_eq!(allocated["instance"]["address"], "127.0.0.1:9100");
    let session = session_of(&allocated);
    let claims = verified_claims(
        &scheduler,
        allocated["connection_token"].as_str().unwrap(),
        &agent.id.to_string(),
    )
    .await;
    assert_eq!(claims["sid"], session.to_string());
    assert_eq!(claims["sub"], user.id.to_string());
    assert!(claims["jti"].is_string());
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(allocated["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap(), expires_at.timestamp());
    let ttl = expires_at.timestamp() - chrono::Utc::now().timestamp();
    assert!(
        (55..=61).contains(&ttl),
        "the reservation lasts RESERVATION_TTL_SECS: {ttl}"
    );

    let (status, shown) = scheduler
        .call(
            Method::GET,
            &format!("/sessions/{session}"),
            &user.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["status"], "allocated");
    assert_eq!(shown["app"], "editor");
    assert_eq!(
        scheduler.n(&format!(
            "SELECT count(*) FROM allocation_decisions WHERE session_id = '{session}'
             AND outcome = 'allocated' AND reason = 'pack' AND jsonb_array_length(candidates) = 1"
        )),
        1,
        "the decision is recorded with its candidates"
    );
    assert_eq!(scheduler.n("SELECT active_sessions FROM instances"), 1);
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_same_allocation() {
    let scheduler = start().await;
    scheduler.register("local", 4, "127.0.0.1:9100").await;
    scheduler.register("local", 4, "127.0.0.1:9101").await;
    let user = scheduler.user();
    let send = |key: &'static str| {
        let scheduler = &scheduler;
        let user = &user;
        async move {
            let response = scheduler
                .client
                .post(scheduler.url("/sessions"))
                .bearer_auth(&user.token)
                .header("Idempotency-Key", key)
                .json(&json!({"region": "local"}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    // Four tries of one key at once, then one more.
    let tries = futures_util::future::join_all((0..4).map(|_| send("k-1"))).await;
    let (status, again) = send("k-1").await;
    assert_eq!(status, StatusCode::CREATED);
    for (status, body) in &tries {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
        assert_eq!(body["session_id"], again["session_id"]);
        assert_eq!(body["instance"]["id"], again["instance"]["id"]);
    }
    assert_eq!(scheduler.n("SELECT count(*) FROM sessions"), 1);
    assert_eq!(scheduler.n("SELECT sum(active_sessions) FROM instances"), 1);
    // Another key is another allocation, refused at the limit of one.
    let (status, problem) = send("k-2").await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "session_limit");
}

#[tokio::test]
async fn a_user_holds_at_most_the_limit_of_live_sessions() {
    let scheduler = start_with(1, |config| config.max_sessions_per_user = 2).await;
    scheduler.register("local", 10, "127.0.0.1:9100").await;
    let user = scheduler.user();
    let tries =
        futures_util::future::join_all((0..6).map(|_| scheduler.allocate(&user, json!({})))).await;
    let created: Vec<&Value> = tries
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(created.len(), 2, "{tries:?}");
    assert!(tries
        .iter()
        .all(|(status, _)| *status == StatusCode::CREATED || *status == StatusCode::CONFLICT));
    assert_eq!(scheduler.n("SELECT active_sessions FROM instances"), 2);
    // Ending one frees a place, at once.
    let (status, _) = scheduler
        .call(
            Method::DELETE,
            &format!("/sessions/{}", session_of(created[0])),
            &user.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(scheduler.n("SELECT active_sessions FROM instances"), 1);
    let (status, _) = scheduler.allocate(&user, json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn no_slot_is_503_with_retry_after_and_says_why() {
    let scheduler = start().await;
    let (status, _) = scheduler
        .allocate(&scheduler.user(), json!({"region": "mars"}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let agent = scheduler.register("local", 1, "127.0.0.1:9100").await;
    let (status, _) = scheduler
        .allocate(&scheduler.user(), json!({"region": "local"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let response = scheduler
        .client
        .post(scheduler.url("/sessions"))
        .bearer_auth(scheduler.user().token)
        .json(&json!({"region": "local"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    // Free again, but late with its heartbeat: no new sessions there.
    scheduler.sql("UPDATE sessions SET status = 'ended', ended_at = now(); UPDATE instances SET active_sessions = 0");
    scheduler.age_heartbeat(&agent, 20);
    let (status, _) = scheduler
        .allocate(&scheduler.user(), json!({"region": "local"}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    for reason in ["no_capacity", "region_full", "stale"] {
        assert_eq!(
            scheduler.n(&format!(
                "SELECT count(*) FROM allocation_decisions WHERE outcome = 'refused' AND reason = '{reason}'"
            )),
            1,
            "{reason} is recorded"
        );
    }
    let metrics = scheduler
        .client
        .get(format!("{}/metrics", scheduler.replicas[0].url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["no_capacity", "region_full", "stale"] {
        assert!(
            metrics.contains(&format!(
                "scheduling_allocations_total{{outcome=\"refused\",reason=\"{reason}\",service=\"instance-scheduling\"}} 1"
            )),
            "{reason} is counted"
        );
    }
}

#[tokio::test]
async fn a_full_region_falls_back_in_order_and_pack_fills_the_fullest_first() {
    let scheduler = start_with(1, |config| {
        config.region_fallback = r#"{"eu":["us","ap"]}"#.into();
    })
    .await;
    let eu = scheduler.register("eu", 1, "127.0.0.1:9100").await;
    let us_big = scheduler.register("us", 3, "127.0.0.1:9101").await;
    let us_small = scheduler.register("us", 2, "127.0.0.1:9102").await;
    let mut placed = Vec::new();
    for _ in 0..4 {
        let (status, body) = scheduler
            .allocate(&scheduler.user(), json!({"region": "eu"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        placed.push(body["instance"]["id"].as_str().unwrap().to_string());
    }
    // eu first; then us: the instance with the fewest free slots that
    // still has one (small: 2 free < big: 3 free), until it is full.
    assert_eq!(
        placed,
        vec![
            eu.id.to_string(),
            us_small.id.to_string(),
            us_small.id.to_string(),
            us_big.id.to_string()
        ]
    );
    assert_eq!(
        scheduler.n("SELECT count(*) FROM allocation_decisions WHERE reason = 'fallback_region'"),
        3
    );
}

#[tokio::test]
async fn spread_takes_the_emptiest_and_live_load_breaks_ties() {
    let scheduler = start_with(1, |config| config.allocation_strategy = "spread".into()).await;
    let busy = scheduler.register("local", 4, "127.0.0.1:9100").await;
    let calm = scheduler.register("local", 4, "127.0.0.1:9101").await;
    scheduler.sql(&format!(
        "UPDATE instances SET cpu_pct = 90 WHERE id = '{}'",
        busy.id
    ));
    let (_, first) = scheduler.allocate(&scheduler.user(), json!({})).await;
    assert_eq!(
        first["instance"]["id"],
        calm.id.to_string(),
        "equal load: the calmer machine"
    );
    let (_, second) = scheduler.allocate(&scheduler.user(), json!({})).await;
    assert_eq!(
        second["instance"]["id"],
        busy.id.to_string(),
        "then the emptier one"
    );
}

#[tokio::test]
async fn sessions_are_seen_and_ended_by_their_owner_or_an_admin_only() {
    let scheduler = start().await;
    scheduler.register("local", 4, "127.0.0.1:9100").await;
    let owner = scheduler.user();
    let other = scheduler.user();
    let admin = scheduler.admin();
    let (_, allocated) = scheduler.allocate(&owner, json!({})).await;
    let path = format!("/sessions/{}", session_of(&allocated));
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = scheduler
            .call(method.clone(), &path, &other.token, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} by another user");
        let (status, _) = scheduler.call(method.clone(), &path, "", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = scheduler.call(Method::GET, &path, &admin.token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        scheduler.n("SELECT active_sessions FROM instances"),
        1,
        "nothing ended yet"
    );
    for _ in 0..2 {
        let (status, _) = scheduler
            .call(Method::DELETE, &path, &admin.token, None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "idempotent");
    }
    let (_, shown) = scheduler.call(Method::GET, &path, &owner.token, None).await;
    assert_eq!(shown["status"], "ended");
    assert!(shown["ended_at"].is_string());
    assert_eq!(scheduler.n("SELECT active_sessions FROM instances"), 0);
    let (status, _) = scheduler
        .call(Method::GET, "/sessions/not-a-uuid", &owner.token, None)
        .await;
    assert!(status.is_client_error());
}

#[tokio::test]
async fn bad_allocations_are_refused_naming_the_field_and_change_nothing() {
    let scheduler = start().await;
    scheduler.register("local", 4, "127.0.0.1:9100").await;
    let user = scheduler.user();
    for (body, field) in [
        (json!({"region": "Local"}), "region"),
        (json!({"region": ""}), "region"),
        (json!({"app": "no spaces"}), "app"),
        (json!({"region": 7}), "region"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let (status, problem) = scheduler.allocate(&user, body.clone()).await;
        refused_naming(status, &problem, field);
    }
    let response = scheduler
        .client
        .post(scheduler.url("/sessions"))
        .bearer_auth(&user.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(scheduler.n("SELECT count(*) FROM sessions"), 0);
    assert_eq!(scheduler.n("SELECT active_sessions FROM instances"), 0);
}

#[tokio::test]
async fn the_agent_reports_a_connection_once_and_an_unused_reservation_expires() {
    let scheduler = start_with(1, |config| config.reservation_ttl_secs = 2).await;
    let agent = scheduler.register("local", 4, "127.0.0.1:9100").await;
    let other_agent = scheduler.register("local", 4, "127.0.0.1:9101").await;
    let user = scheduler.user();
    let (_, allocated) = scheduler.allocate(&user, json!({})).await;
    let session = session_of(&allocated);
    let on = if allocated["instance"]["id"] == agent.id.to_string() {
        (&agent, &other_agent)
    } else {
        (&other_agent, &agent)
    };
    let (host, elsewhere) = on;
    let report = |by: &Agent, on: &Agent| {
        let path = format!("/instances/{}/sessions/{session}/connected", on.id);
        let credential = by.credential.clone();
        let scheduler = &scheduler;
        async move { scheduler.call(Method::POST, &path, &credential, None).await }
    };
    let (status, _) = report(elsewhere, host).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "another host's credential"
    );
    let (status, _) = report(elsewhere, elsewhere).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not a session of that host");
    let (status, answer) = report(host, host).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["user_id"], user.id.to_string());
    let (status, problem) = report(host, host).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a token works once: {problem}"
    );

    // The heartbeat that still lists it keeps it; one that does not (a
    // heartbeat interval after it connected) ends it.
    let (_, shown) = scheduler
        .call(
            Method::GET,
            &format!("/sessions/{session}"),
            &user.token,
            None,
        )
        .await;
    assert_eq!(shown["status"], "connected");
    scheduler.sql(&format!(
        "UPDATE sessions SET connected_at = now() - interval '10 seconds' WHERE id = '{session}'"
    ));
    let (_, still) = scheduler.heartbeat(host, &[session]).await;
    assert_eq!(still["ended"], json!([]), "still connected here");
    assert_eq!(
        scheduler.n(&format!(
            "SELECT active_sessions FROM instances WHERE id = '{}'",
            host.id
        )),
        1
    );
    scheduler.heartbeat(host, &[]).await;
    let (_, shown) = scheduler
        .call(
            Method::GET,
            &format!("/sessions/{session}"),
            &user.token,
            None,
        )
        .await;
    assert_eq!(shown["status"], "ended", "the client left");
    assert_eq!(scheduler.n("SELECT sum(active_sessions) FROM instances"), 0);

    // A reservation nobody uses expires and frees its slot.
    let (_, reserved) = scheduler.allocate(&user, json!({})).await;
    let unused = session_of(&reserved);
    let holder = if reserved["instance"]["id"] == agent.id.to_string() {
        &agent
    } else {
        &other_agent
    };
    assert_eq!(scheduler.n("SELECT sum(active_sessions) FROM instances"), 1);
    // A session the scheduler ended is named in the next heartbeat's
    // answer, so that the agent lets it go.
    let (_, gone) = scheduler.heartbeat(host, &[session]).await;
    assert_eq!(gone["ended"], json!([session]));
    let expired = testkit::eventually(Duration::from_secs(10), || async {
        (scheduler.n(&format!(
            "SELECT count(*) FROM sessions WHERE id = '{unused}' AND status = 'expired'"
        )) == 1)
            .then_some(())
    })
    .await;
    assert!(expired.is_some(), "the reservation expired");
    assert_eq!(scheduler.n("SELECT sum(active_sessions) FROM instances"), 0);
    let path = format!("/instances/{}/sessions/{unused}/connected", holder.id);
    let (status, _) = scheduler
        .call(Method::POST, &path, &holder.credential, None)
        .await;
    assert_eq!(
        status,
        StatusCode::GONE,
        "an expired reservation admits nobody"
    );
}

#[tokio::test]
async fn a_lapsed_reservation_frees_its_place_at_once_and_an_old_key_says_so() {
    let scheduler = start_with(1, |config| config.reconcile_interval_secs = 3600).await;
    scheduler.register("local", 2, "127.0.0.1:9100").await;
    let user = scheduler.user();
    let with_key = |key: &'static str| {
        let scheduler = &scheduler;
        let user = &user;
        async move {
            let response = scheduler
                .client
                .post(scheduler.url("/sessions"))
                .bearer_auth(&user.token)
                .header("Idempotency-Key", key)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = with_key("first").await;
    assert_eq!(status, StatusCode::CREATED);
    // Its reservation lapses; no reconciler round has run.
    scheduler.sql("UPDATE sessions SET expires_at = now() - interval '1 second'");
    let (status, second) = with_key("second").await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the lapsed one counts no more: {second}"
    );
    assert_eq!(
        scheduler.n(&format!(
            "SELECT count(*) FROM sessions WHERE id = '{}' AND status = 'expired'",
            session_of(&first)
        )),
        1
    );
    assert_eq!(
        scheduler.n("SELECT active_sessions FROM instances"),
        1,
        "its slot is free"
    );
    // Retrying the first key finds a session that is over: no fresh token.
    let (status, problem) = with_key("first").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["code"], "idempotency_key_used");
}
