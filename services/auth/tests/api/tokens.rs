//! Access tokens as another service sees them, through `authn` with keys
//! fetched from auth's JWKS.

use crate::helpers::*;
use actix_web::{web, App, HttpResponse, HttpServer};
use authn::{Caller, JwksClient, Verifier};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::prelude::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A minimal resource service guarded by `authn`.
async fn resource_service(app: &TestApp) -> String {
    let jwks = JwksClient::new(app.url("/.well-known/jwks.json"))
        .with_min_refetch_interval(Duration::from_millis(200))
        .with_max_age(Duration::from_millis(500));
    let verifier = Verifier::new(&app.config.jwt_issuer, Arc::new(jwks));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(verifier.clone()))
            .route(
                "/whoami",
                web::get().to(|caller: Caller| async move {
                    HttpResponse::Ok().json(json!({"sub": caller.claims.sub}))
                }),
            )
            .route(
                "/admin",
                web::get().to(|caller: Caller| async move {
                    caller.require(domain::Role::Admin)?;
                    Ok::<_, platform::Problem>(HttpResponse::Ok().finish())
                }),
            )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let address = format!("http://{}", server.addrs()[0]);
    tokio::spawn(server.run());
    address
}

fn current_private_key(app: &TestApp) -> (String, Vec<u8>) {
    use auth::schema::signing_keys::dsl::*;
    let mut conn = app.db.connect().unwrap();
    signing_keys
        .select((kid, private_key))
        .order(created_at.desc())
        .first(&mut conn)
        .unwrap()
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

fn sign(claims: &Value, key_id: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key_id.into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn unsigned(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

async fn status_of(client: &reqwest::Client, url: &str, token: &str) -> (u16, Option<String>) {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (response.status().as_u16(), challenge)
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let service = resource_service(&app).await;
    let whoami = format!("{service}/whoami");
    let (_, access, user_id) = app.signed_in_user(&unique_email()).await;
    let client = reqwest::Client::new();

    let (status, _) = status_of(&client, &whoami, &access).await;
    assert_eq!(status, 200, "a genuine token is accepted");

    let (real_kid, private) = current_private_key(&app);
    let real_key = EncodingKey::from_ed_der(&private);
    let base = claims_of(&access);
    let now = chrono::Utc::now().timestamp();
    let with = |field: &str, value: Value| {
        let mut claims = base.clone();
        claims[field] = value;
        claims
    };

    let foreign_pkcs8 =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let foreign = sign(
        &base,
        &real_kid,
        &EncodingKey::from_ed_der(foreign_pkcs8.as_ref()),
    );

    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.typ = Some("at+jwt".into());
    hs_header.kid = Some(real_kid.clone());
    let hs256 =
        jsonwebtoken::encode(&hs_header, &base, &EncodingKey::from_secret(&public)).unwrap();

    let none = unsigned(
        json!({"alg": "none", "typ": "at+jwt", "kid": real_kid}),
        &base,
    );

    let mut tampered_parts: Vec<String> = access.split('.').map(str::to_string).collect();
    tampered_parts[1] = URL_SAFE_NO_PAD.encode(with("roles", json!(["admin"])).to_string());
    let tampered = tampered_parts.join(".");

    let mut missing_sub = base.clone();
    missing_sub.as_object_mut().unwrap().remove("sub");

    let mut wrong_typ = Header::new(Algorithm::EdDSA);
    wrong_typ.kid = Some(real_kid.clone());
    wrong_typ.typ = Some("JWT".into());

    let jku_header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "attacker", "jku": "http://127.0.0.1:1/jwks.json"});
    let jku_token = {
        let signed = sign(
            &base,
            "attacker",
            &EncodingKey::from_ed_der(foreign_pkcs8.as_ref()),
        );
        let parts: Vec<&str> = signed.split('.').collect();
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(jku_header.to_string()),
            parts[1],
            parts[2]
        )
    };

    let cases: Vec<(&str, String)> = vec![
        ("signed by a foreign key", foreign),
        ("alg none", none),
        ("HS256 with the public key", hs256),
        (
            "expired",
            sign(&with("exp", json!(now - 60)), &real_kid, &real_key),
        ),
        (
            "not yet valid",
            sign(&with("nbf", json!(now + 120)), &real_kid, &real_key),
        ),
        (
            "wrong aud",
            sign(&with("aud", json!("elsewhere")), &real_kid, &real_key),
        ),
        (
            "wrong iss",
            sign(
                &with("iss", json!("https://evil.example")),
                &real_kid,
                &real_key,
            ),
        ),
        ("tampered payload", tampered),
        ("unknown kid", sign(&base, "no-such-kid", &real_key)),
        ("missing sub", sign(&missing_sub, &real_kid, &real_key)),
        (
            "wrong typ",
            jsonwebtoken::encode(&wrong_typ, &base, &real_key).unwrap(),
        ),
        ("jku pointing elsewhere", jku_token),
        ("garbage", "not.a.token".to_string()),
    ];
    for (name, token) in cases {
        let (status, challenge) = status_of(&client, &whoami, &token).await;
        assert_eq!(status, 401, "{name}");
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer error=\"invalid_token\""),
            "{name}"
        );
    }
    let (status, _) = status_of(
        &client,
        &whoami,
        &sign(&with("exp", json!(now + 60)), &real_kid, &real_key),
    )
    .await;
    assert_eq!(status, 200, "the same key and claims otherwise pass");

    assert_eq!(
        client.get(&whoami).send().await.unwrap().status(),
        401,
        "no token at all"
    );
    let (status, _) = status_of(&client, &format!("{service}/admin"), &access).await;
    assert_eq!(status, 403, "a user is not an admin");
    assert_eq!(claims_of(&access)["sub"], user_id);
}

fn rotate_keys(app: &TestApp) {
    use secrecy::ExposeSecret;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_auth"))
        .arg("rotate-keys")
        .env("DATABASE_URL", app.config.database_url.expose_secret())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_rotation_logs_nobody_out_but_two_retire_the_old_key() {
    let app = spawn_app().await;
    let service = resource_service(&app).await;
    let whoami = format!("{service}/whoami");
    let (device, access, _) = app.signed_in_user(&unique_email()).await;
    let client = reqwest::Client::new();
    let old_kid = jsonwebtoken::decode_header(&access).unwrap().kid.unwrap();

    rotate_keys(&app);
    let rotated = testkit::eventually(Duration::from_secs(10), || async {
        let jwks: Value = app
            .client
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (jwks["keys"].as_array()?.len() == 2).then_some(jwks)
    })
    .await
    .expect("two published keys");
    assert!(rotated["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == old_kid.as_str()));
    assert_eq!(
        status_of(&client, &whoami, &access).await.0,
        200,
        "earlier tokens still verify"
    );

    let fresh: Value = app.refresh_with(&device).await.json().await.unwrap();
    let fresh_token = fresh["access_token"].as_str().unwrap().to_string();
    assert_ne!(
        jsonwebtoken::decode_header(&fresh_token)
            .unwrap()
            .kid
            .unwrap(),
        old_kid,
        "new tokens use the new key"
    );
    assert_eq!(
        status_of(&client, &whoami, &fresh_token).await.0,
        200,
        "an unknown kid triggers a JWKS refetch"
    );

    rotate_keys(&app);
    let retired = testkit::eventually(Duration::from_secs(10), || async {
        let jwks: Value = app
            .client
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (!jwks["keys"]
            .as_array()?
            .iter()
            .any(|k| k["kid"] == old_kid.as_str()))
        .then_some(())
    })
    .await;
    assert!(retired.is_some(), "the oldest key is no longer published");
    let refused = testkit::eventually(Duration::from_secs(5), || async {
        (status_of(&client, &whoami, &access).await.0 == 401).then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "a service using authn refuses tokens of the retired key"
    );
    assert_eq!(app.get_authorized("/sessions", &access).await.status(), 401);
    assert_eq!(
        app.get_authorized("/sessions", &fresh_token).await.status(),
        200
    );
}
