use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use authn::{Jwk, JwkSet};
use host_agent::config::Config;
use host_agent::startup::Application;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

pub const SECRET: &str = "a-registration-secret-for-tests";
const CREDENTIAL: &str = "the-instance-credential-of-the-fake";

/// What the fake scheduler was told, and what it answers heartbeats.
#[derive(Default)]
pub struct Record {
    pub registrations: Vec<Value>,
    pub heartbeats: Vec<Value>,
    pub connected: HashSet<Uuid>,
    pub drain: bool,
    pub terminate: bool,
    /// Sessions the scheduler says it ended.
    pub ended: Vec<Uuid>,
    /// The next connect report is recorded, but its answer is lost (500).
    pub lose_next_connected_answer: bool,
}

struct Shared {
    instance: Uuid,
    jwks: JwkSet,
    record: Arc<Mutex<Record>>,
}

/// instance-scheduling's agent routes, answered from memory, with a
/// signing key of its own published as its JWKS.
pub struct FakeScheduler {
    pub url: String,
    /// The id every registration gets.
    pub instance: Uuid,
    pub record: Arc<Mutex<Record>>,
    kid: String,
    encoding: EncodingKey,
    server: ServerHandle,
}

impl Drop for FakeScheduler {
    fn drop(&mut self) {
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn problem(status: StatusCode, code: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(json!({
            "type": format!("https://errors.platform.dev/{code}"),
            "title": code,
            "status": status.as_u16(),
            "code": code,
            "detail": format!("the fake scheduler says {code}"),
        }))
}

async fn register(
    req: HttpRequest,
    shared: web::Data<Shared>,
    body: web::Json<Value>,
) -> HttpResponse {
    if bearer(&req) != Some(SECRET) {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    shared
        .record
        .lock()
        .unwrap()
        .registrations
        .push(body.into_inner());
    HttpResponse::Created().json(json!({
        "id": shared.instance,
        "credential": CREDENTIAL,
        "heartbeat_interval_secs": 1,
    }))
}

fn is_instance(req: &HttpRequest, shared: &Shared, id: Uuid) -> bool {
    id == shared.instance && bearer(req) == Some(CREDENTIAL)
}

async fn heartbeat(
    req: HttpRequest,
    shared: web::Data<Shared>,
    path: web::Path<Uuid>,
    body: web::Json<Value>,
) -> HttpResponse {
    if !is_instance(&req, &shared, path.into_inner()) {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let mut record = shared.record.lock().unwrap();
    record.heartbeats.push(body.into_inner());
    HttpResponse::Ok()
        .json(json!({"drain": record.drain, "terminate": record.terminate, "ended": record.ended}))
}

async fn connected(
    req: HttpRequest,
    shared: web::Data<Shared>,
    path: web::Path<(Uuid, Uuid)>,
) -> HttpResponse {
    let (id, session) = path.into_inner();
    if !is_instance(&req, &shared, id) {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let mut record = shared.record.lock().unwrap();
    if record.connected.insert(session) {
        if std::mem::take(&mut record.lose_next_connected_answer) {
            return problem(StatusCode::INTERNAL_SERVER_ERROR, "internal");
        }
        HttpResponse::Ok().json(json!({"session_id": session, "user_id": Uuid::new_v4()}))
    } else {
        problem(StatusCode::CONFLICT, "already_used")
    }
}

async fn jwks(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(&shared.jwks)
}

impl FakeScheduler {
    pub async fn start() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let kid = format!("fake-{}", Uuid::new_v4().simple());
        let instance = Uuid::new_v4();
        let record = Arc::new(Mutex::new(Record::default()));
        let shared = web::Data::new(Shared {
            instance,
            jwks: JwkSet {
                keys: vec![Jwk::ed25519(&kid, pair.public_key().as_ref())],
            },
            record: record.clone(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route(
                    "/api/scheduling/instances/register",
                    web::post().to(register),
                )
                .route(
                    "/api/scheduling/instances/{id}/heartbeat",
                    web::post().to(heartbeat),
                )
                .route(
                    "/api/scheduling/instances/{id}/sessions/{session_id}/connected",
                    web::post().to(connected),
                )
                .route("/api/scheduling/.well-known/jwks.json", web::get().to(jwks))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url,
            instance,
            record,
            kid,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            server: handle,
        }
    }

    /// A connection token as the scheduler signs it, for `session` on
    /// `instance`, valid for a minute.
    pub fn token(&self, session: Uuid, instance: Uuid) -> String {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("connection+jwt".to_string());
        header.kid = Some(self.kid.clone());
        let claims = json!({
            "aud": instance.to_string(),
            "sid": session.to_string(),
            "sub": Uuid::new_v4().to_string(),
            "iat": now,
            "exp": now + 60,
            "jti": Uuid::new_v4().to_string(),
        });
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }

    pub fn last_heartbeat(&self) -> Option<Value> {
        self.record.lock().unwrap().heartbeats.last().cloned()
    }

    pub fn heartbeat_count(&self) -> usize {
        self.record.lock().unwrap().heartbeats.len()
    }
}

/// An agent running in-process (port 0) against the scheduler at `url`.
pub struct Agent {
    pub url: String,
    pub client: reqwest::Client,
    pub run: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn start_agent(scheduler_url: &str, secret: &str) -> Agent {
    let mut config = Config::with_secret(secret).expect("test configuration");
    config.scheduler_url = scheduler_url.to_string();
    config.host = "127.0.0.1".into();
    config.port = 0;
    config.shutdown_grace_secs = 0;
    let application = Application::build(config).await.expect("the agent builds");
    let url = format!("http://127.0.0.1:{}", application.port());
    let run = tokio::spawn(application.run_until_stopped());
    Agent {
        url,
        client: reqwest::Client::new(),
        run,
    }
}

impl Agent {
    pub async fn connect(&self, token: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/connect", self.url))
            .json(&json!({ "connection_token": token }))
            .send()
            .await
            .expect("POST /connect")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET")
    }
}
