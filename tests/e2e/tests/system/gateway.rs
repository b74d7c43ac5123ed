//! The real Traefik in front of the real services, with the project's own
//! configuration (traefik/local, which shares traefik/dynamic with
//! production): what the gateway routes, refuses, limits and adds.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;
use testkit::ws::WsClient;

/// Traefik's own answer to a path no router takes.
const NOT_ROUTED: &str = "404 page not found\n";

/// auth, accounts, chat and the scheduler, and the gateway in front; auth
/// believes `X-Forwarded-For` from 127.0.0.1 only (where Traefik connects
/// from).
async fn everything_behind_the_gateway() -> (Platform, Gateway) {
    let mut platform = spawn_configured(
        |auth| auth.trusted_proxies = "127.0.0.1".parse().unwrap(),
        |_| {},
    )
    .await;
    let chat = platform.start_chat().await;
    let (scheduling, _worker_db) = platform.start_fleet(|_| {}).await;
    let gateway = Gateway::start(Upstreams {
        auth: Some(platform.auth_url.clone()),
        accounts: Some(platform.accounts_url.clone()),
        chat: Some(chat),
        scheduling: Some(scheduling),
    })
    .await;
    (platform, gateway)
}

/// A new visitor's access token, asked for through the gateway.
async fn visitor_token(client: &reqwest::Client, gateway: &Gateway) -> String {
    let visitor: Value = client
        .post(gateway.api("/api/auth/visitors"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    visitor["access_token"].as_str().unwrap().to_string()
}

/// auth and accounts behind the gateway (nothing consumes their jobs, so a
/// test can take them).
async fn auth_behind_the_gateway() -> (Platform, Gateway) {
    let platform = spawn_configured(
        |auth| auth.trusted_proxies = "127.0.0.1".parse().unwrap(),
        |_| {},
    )
    .await;
    let gateway = Gateway::start(Upstreams {
        auth: Some(platform.auth_url.clone()),
        accounts: Some(platform.accounts_url.clone()),
        ..Upstreams::default()
    })
    .await;
    (platform, gateway)
}

/// The services' API documents, as committed (a test of each service
/// keeps them equal to what its binary serves).
fn api_document(service: &str) -> Value {
    let path = format!(
        "{}/../../docs/openapi/{service}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A concrete path for a documented one: each `{parameter}` a fresh UUID.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                uuid::Uuid::new_v4().to_string()
            } else {
                segment.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A request through the gateway, asked again while its rate limit answers
/// 429 (auth's router allows bursts of 30).
async fn through_the_limit(
    client: &reqwest::Client,
    method: Method,
    url: &str,
) -> reqwest::Response {
    for _ in 0..10 {
        let answer = client.request(method.clone(), url).send().await.unwrap();
        if answer.status() != 429 {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{method} {url}: still rate limited after 5 s");
}

#[tokio::test]
async fn every_public_route_answers_through_its_prefix_as_it_does_directly() {
    let (mut platform, gateway) = everything_behind_the_gateway().await;
    let client = reqwest::Client::new();
    let upstreams = gateway.upstreams.clone();
    let mut checked = 0;
    for (service, prefix, upstream) in [
        ("auth", "/api/auth", upstreams.auth),
        ("accounts", "/api/accounts", upstreams.accounts),
        ("chat", "/api/chat", upstreams.chat),
        (
            "instance-scheduling",
            "/api/scheduling",
            upstreams.scheduling,
        ),
    ] {
        let upstream = upstream.unwrap();
        let document = api_document(service);
        let paths = document["paths"].as_object().unwrap();
        let mut routed = 0;
        for (path, operations) in paths {
            if !path.starts_with(prefix) {
                assert_eq!(path, "/metrics", "{service} serves {path} outside {prefix}");
                continue;
            }
            for method in operations.as_object().unwrap().keys() {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let url = concrete(path);
                let through = through_the_limit(&client, method.clone(), &gateway.api(&url)).await;
                let status = through.status();
                let content_type = through
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                let body = through.text().await.unwrap();
                assert_ne!(body, NOT_ROUTED, "{method} {url}: not routed");
                assert!(status.as_u16() < 500, "{method} {url}: {status} {body}");
                assert!(
                    status != 404 || content_type.starts_with("application/problem+json"),
                    "{method} {url}: a 404 that is not the service's: {body}"
                );
                // The same request straight to the service gets the same
                // answer: the gateway took it to the right one, unchanged
                // (another service would answer 404 for this path).
                let straight = client
                    .request(method.clone(), format!("{upstream}{url}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(straight.status(), status, "{method} {url}");
                routed += 1;
            }
        }
        assert!(routed >= 5, "{service}: only {routed} operations");
        checked += routed;
    }
    assert!(checked > 50, "{checked}");
    // The prefix is a whole path segment: a longer name is not auth's.
    let lookalike = client
        .get(gateway.api("/api/authentication/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(lookalike.status(), 404);
    assert_eq!(lookalike.text().await.unwrap(), NOT_ROUTED);
    platform.stop().await;
}

#[tokio::test]
async fn metrics_and_unprefixed_paths_are_not_routed() {
    let (mut platform, gateway) = everything_behind_the_gateway().await;
    let client = reqwest::Client::new();
    // Each service serves /metrics itself; the gateway never takes it there.
    let served = client
        .get(format!("{}/metrics", platform.auth_url))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    for path in [
        "/metrics",
        "/",
        "/healthz",
        "/api/worker/healthz",
        "/openapi.json",
    ] {
        let answer = client.get(gateway.api(path)).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{path}");
        assert_eq!(answer.text().await.unwrap(), NOT_ROUTED, "{path}");
    }
    platform.stop().await;
}

#[tokio::test]
async fn the_chat_websocket_upgrades_and_carries_frames_both_ways() {
    let (mut platform, gateway) = everything_behind_the_gateway().await;
    let client = reqwest::Client::new();
    let token = visitor_token(&client, &gateway).await;
    let room: Value = testkit::send_with_token(
        &client,
        Method::POST,
        &gateway.api("/api/chat/rooms"),
        &token,
        Some(json!({"subject": "Through the gateway"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let room_id = room["id"].as_str().unwrap().to_string();

    let ws_url = gateway.api("/api/chat/ws").replacen("http://", "ws://", 1);
    let mut ws = WsClient::authed(&ws_url, &token).await;
    ws.send(json!({"type": "subscribe", "room_id": room_id}))
        .await;
    ws.send(json!({"type": "ping"})).await;
    ws.frame_of("pong").await;
    ws.send(json!({
        "type": "send",
        "room_id": room_id,
        "client_msg_id": "through-traefik-1",
        "body": "Hello over the gateway"
    }))
    .await;
    let message = ws.frame_of("message").await;
    assert_eq!(message["body"], "Hello over the gateway");
    // A message posted over REST reaches the socket too.
    let posted = testkit::send_with_token(
        &client,
        Method::POST,
        &gateway.api(&format!("/api/chat/rooms/{room_id}/messages")),
        &token,
        Some(json!({"body": "and over REST"})),
    )
    .await;
    assert_eq!(posted.status(), 201);
    let message = ws.frame_of("message").await;
    assert_eq!(message["body"], "and over REST");
    ws.close().await;
    platform.stop().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429_and_lets_the_client_back_in() {
    let (mut platform, gateway) = everything_behind_the_gateway().await;
    let client = reqwest::Client::new();
    let url = gateway.api("/api/accounts/healthz");
    let answers = futures_util::future::join_all((0..1500).map(|_| client.get(&url).send())).await;
    let statuses: Vec<u16> = answers
        .into_iter()
        .map(|answer| answer.unwrap().status().as_u16())
        .collect();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    let served = statuses.iter().filter(|s| **s == 200).count();
    // 1,500 at once outrun a burst of 200 and 100/s unless sending them
    // takes 13 s.
    assert!(limited > 0, "no 429 in 1,500 requests at once");
    assert!(served >= 200, "the burst is served: {served}");
    assert_eq!(limited + served, statuses.len(), "{statuses:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    // auth has a stricter limit of its own: 100 at once is past its burst.
    let auth = gateway.api("/api/auth/healthz");
    let answers = futures_util::future::join_all((0..100).map(|_| client.get(&auth).send())).await;
    let limited = answers
        .into_iter()
        .filter(|answer| answer.as_ref().unwrap().status() == 429)
        .count();
    assert!(limited >= 50, "auth let {} of 100 through", 100 - limited);
    platform.stop().await;
}

#[tokio::test]
async fn security_headers_are_set_and_large_answers_compressed() {
    let (mut platform, gateway) = everything_behind_the_gateway().await;
    let client = reqwest::Client::new();
    for path in ["/api/auth/healthz", "/api/chat/healthz", "/api/accounts/me"] {
        let answer = client.get(gateway.api(path)).send().await.unwrap();
        let headers = answer.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(
            headers["content-security-policy"], "frame-ancestors 'none'",
            "{path}"
        );
        assert!(headers.get("server").is_none(), "{path}: {headers:?}");
    }
    // The API documents are large and compress well.
    let document = client
        .get(gateway.api("/api/auth/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(document.status(), 200);
    assert_eq!(document.headers()["content-encoding"], "gzip");
    // A body above the gateway's limit never reaches a service.
    let oversize = client
        .post(gateway.api("/api/auth/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(oversize.status(), 413);
    platform.stop().await;
}

/// A client whose connections leave from `address` (any of 127.0.0.0/8).
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().ok())
        .build()
        .unwrap()
}

/// The address auth recorded for the session a login made.
async fn recorded_address(client: &reqwest::Client, sessions_url: &str, token: &str) -> String {
    let sessions: Value = client
        .get(sessions_url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sessions["items"][0]["ip"].as_str().unwrap().to_string()
}

async fn login(client: &reqwest::Client, url: &str, email: &str, forged: &str) -> String {
    let answer: Value = client
        .post(url)
        .header("x-forwarded-for", forged)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_string()
}

#[tokio::test]
async fn auth_believes_forwarded_for_only_from_the_gateway() {
    let (mut platform, gateway) = auth_behind_the_gateway().await;
    let person = platform.user().await;

    // Through the gateway from 127.0.0.3, with a forged header: Traefik
    // drops what the client claimed and says where it came from.
    let via_gateway = client_from("127.0.0.3");
    let token = login(
        &via_gateway,
        &gateway.api("/api/auth/login"),
        &person.email,
        "203.0.113.66",
    )
    .await;
    let address = recorded_address(&via_gateway, &gateway.api("/api/auth/sessions"), &token).await;
    assert_eq!(address, "127.0.0.3");

    // Straight to auth from 127.0.0.2 (not the gateway): the header is
    // ignored and the peer counts.
    let person = platform.user().await;
    let around = client_from("127.0.0.2");
    let token = login(
        &around,
        &platform.auth("/login"),
        &person.email,
        "203.0.113.66",
    )
    .await;
    let address = recorded_address(&around, &platform.auth("/sessions"), &token).await;
    assert_eq!(address, "127.0.0.2");
    platform.stop().await;
}

#[tokio::test]
async fn trace_context_and_request_id_pass_through() {
    let (mut platform, gateway) = auth_behind_the_gateway().await;
    let client = reqwest::Client::new();
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let request_id = format!("gateway-{}", uuid::Uuid::new_v4().simple());
    let registered = client
        .post(gateway.api("/api/auth/register"))
        .header("traceparent", &traceparent)
        .header("x-request-id", &request_id)
        .json(&json!({
            "email": unique_email(),
            "password": PASSWORD,
            "display_name": "Traced"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201, "{:?}", registered.text().await);
    assert_eq!(registered.headers()["x-request-id"], request_id.as_str());

    // The verification email's job carries the caller's trace: the
    // gateway passed `traceparent` to auth, which joined it.
    let job = platform
        .take_email_job()
        .await
        .expect("the verification email job");
    let carried = job
        .headers
        .0
        .get("traceparent")
        .cloned()
        .unwrap_or_default();
    assert!(
        carried.contains(&trace_id),
        "{carried} in {:?}",
        job.headers
    );
    // The gateway's access log keeps the request id.
    let logged = testkit::eventually(Duration::from_secs(5), || async {
        gateway.log().contains(&request_id).then_some(())
    })
    .await;
    assert!(logged.is_some(), "{}", gateway.log());
    platform.stop().await;
}

/// Traefik's entrypoints keep their 60 s read timeout (against slow
/// request bodies); an upgraded WebSocket must outlive it.
#[tokio::test]
async fn a_websocket_outlives_the_gateways_read_timeout() {
    let (mut platform, gateway) = everything_behind_the_gateway().await;
    let client = reqwest::Client::new();
    let token = visitor_token(&client, &gateway).await;
    let ws_url = gateway.api("/api/chat/ws").replacen("http://", "ws://", 1);
    let mut ws = WsClient::authed(&ws_url, &token).await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(70) {
        ws.send(json!({"type": "ping"})).await;
        ws.frame_of("pong").await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    ws.send(json!({"type": "ping"})).await;
    ws.frame_of("pong").await;
    ws.close().await;
    platform.stop().await;
}
