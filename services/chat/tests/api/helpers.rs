use domain::messages::{Envelope, UserKind, UserRegistered};
use domain::Role;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use testkit::ws::WsClient;
use testkit::{TestBus, TestDatabase, TestIssuer};
use uuid::Uuid;

/// Chat replicas on one test database and one set of AMQP names, with
/// testkit signing the tokens and publishing the events auth would.
pub struct Chat {
    pub db: TestDatabase,
    pub bus: TestBus,
    pub issuer: TestIssuer,
    pub client: reqwest::Client,
    pub replicas: Vec<Replica>,
    pub config: chat::config::Config,
}

pub struct Replica {
    pub url: String,
    server: actix_web::dev::ServerHandle,
}

/// A replica as its own process (the `chat` binary), for what only a
/// process can show: SIGTERM and kill -9.
pub struct ReplicaProcess {
    pub url: String,
    child: tokio::process::Child,
}

impl ReplicaProcess {
    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap()
    }

    /// kill -9: no goodbye of any kind.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        for replica in &self.replicas {
            let server = replica.server.clone();
            tokio::spawn(async move { server.stop(false).await });
        }
    }
}

pub fn chat_database() -> TestDatabase {
    TestDatabase::create(
        "chat",
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")),
        |conn| platform::db::migrate(conn, chat::MIGRATIONS, chat::MIGRATION_LOCK).map(|_| ()),
    )
    .expect("test database")
}

/// Settings that make tests quick: presence expires in seconds.
pub fn quick(config: &mut chat::config::Config) {
    config.presence_grace_secs = 1;
    config.replica_heartbeat_secs = 1;
    config.replica_expiry_secs = 5;
}

pub async fn start() -> Chat {
    start_with(1, quick).await
}

pub async fn start_with(replicas: usize, adjust: impl Fn(&mut chat::config::Config)) -> Chat {
    platform::telemetry::init_for_tests("chat");
    let bus = TestBus::new();
    bus.track_topology(&chat::topology(vec![Duration::from_millis(50)]));
    let issuer = TestIssuer::start("http://localhost/api/auth")
        .await
        .unwrap();
    let db = chat_database();
    let mut config = chat::config::Config::defaults().unwrap();
    config.common.host = "127.0.0.1".into();
    config.port = 0;
    config.database_url = SecretString::from(db.url().to_string());
    config.common.database_pool_size = 6;
    config.common.amqp_prefix = bus.prefix().to_string();
    config.common.shutdown_grace_secs = 0;
    config.auth_jwks_url = issuer.jwks_url().to_string();
    config.jwt_issuer = issuer.issuer().to_string();
    config.common.retry_delays_ms = "50".into();
    adjust(&mut config);
    let mut chat = Chat {
        db,
        bus,
        issuer,
        // Idle connections are dropped before the server's keep-alive (5 s)
        // ends them, or a request can race the server's close.
        client: reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
        replicas: Vec::new(),
        config,
    };
    for _ in 0..replicas {
        chat.add_replica().await;
    }
    chat
}

/// Someone with a token.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: Uuid,
    pub token: String,
    pub email: Option<String>,
}

impl Chat {
    pub async fn add_replica(&mut self) -> usize {
        self.add_replica_with(|_| {}).await
    }

    /// A replica with settings of its own (a broker behind a proxy).
    pub async fn add_replica_with(
        &mut self,
        adjust: impl FnOnce(&mut chat::config::Config),
    ) -> usize {
        let mut config = self.config.clone();
        adjust(&mut config);
        let app = chat::startup::Application::build(config).await.unwrap();
        let url = format!("http://127.0.0.1:{}", app.port());
        let replica = Replica {
            url: url.clone(),
            server: app.server_handle(),
        };
        tokio::spawn(app.run_until_stopped());
        testkit::wait_until_ready(&self.client, &format!("{url}/api/chat/readyz")).await;
        self.replicas.push(replica);
        self.replicas.len() - 1
    }

    /// Starts a replica as a process of its own on the same database and
    /// AMQP names.
    pub async fn spawn_process(&self) -> ReplicaProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = &self.config;
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat"))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", self.db.url())
            .env("DATABASE_POOL_SIZE", "4")
            .env("AMQP_PREFIX", self.bus.prefix())
            .env("AUTH_JWKS_URL", &config.auth_jwks_url)
            .env("JWT_ISSUER", &config.jwt_issuer)
            .env("RETRY_DELAYS_MS", "50")
            .env("SHUTDOWN_GRACE_SECS", "0")
            .env(
                "PRESENCE_GRACE_SECS",
                config.presence_grace_secs.to_string(),
            )
            .env(
                "REPLICA_HEARTBEAT_SECS",
                config.replica_heartbeat_secs.to_string(),
            )
            .env(
                "REPLICA_EXPIRY_SECS",
                config.replica_expiry_secs.to_string(),
            )
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        testkit::wait_until_ready(&self.client, &format!("{url}/api/chat/readyz")).await;
        ReplicaProcess { url, child }
    }

    pub fn url(&self, path: &str) -> String {
        self.url_on(0, path)
    }

    pub fn url_on(&self, replica: usize, path: &str) -> String {
        format!("{}/api/chat{path}", self.replicas[replica].url)
    }

    pub fn ws_url(&self, replica: usize) -> String {
        self.url_on(replica, "/ws").replacen("http://", "ws://", 1)
    }

    pub fn visitor(&self) -> Person {
        let id = Uuid::now_v7();
        Person {
            id,
            token: self.issuer.token(id, &[Role::Visitor]),
            email: None,
        }
    }

    pub fn user(&self) -> Person {
        let id = Uuid::now_v7();
        Person {
            id,
            token: self.issuer.token(id, &[Role::User]),
            email: None,
        }
    }

    /// A staff member chat knows from auth's event (with an email).
    pub async fn staff(&self) -> Person {
        let id = Uuid::now_v7();
        let email = format!("staff-{}@example.com", id.simple());
        self.bus
            .publish(&Envelope::new(UserRegistered {
                user_id: id,
                email: Some(email.clone()),
                display_name: "Sam Staff".into(),
                roles: vec![Role::User, Role::Staff],
                kind: UserKind::Registered,
            }))
            .await
            .unwrap();
        let known = testkit::eventually(Duration::from_secs(10), || async {
            (self.n(&format!(
                "SELECT count(*) FROM agents WHERE user_id = '{id}'"
            )) == 1)
                .then_some(())
        })
        .await;
        assert!(known.is_some(), "chat never learned of staff {id}");
        Person {
            id,
            token: self.issuer.token(id, &[Role::User, Role::Staff]),
            email: Some(email),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_on(0, method, path, token, body).await
    }

    pub async fn call_on(
        &self,
        replica: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = self.url_on(replica, path);
        let response = testkit::send_with_token(&self.client, method, &url, token, body).await;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn open_room(&self, visitor: &Person) -> Value {
        let (status, room) = self
            .call(Method::POST, "/rooms", &visitor.token, Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{room}");
        room
    }

    pub async fn post(&self, person: &Person, room: &str, body: &str) -> Value {
        let (status, message) = self
            .call(
                Method::POST,
                &format!("/rooms/{room}/messages"),
                &person.token,
                Some(json!({ "body": body })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{message}");
        message
    }

    /// Connects `person` to `replica` and waits until the connection
    /// counts (for staff: until chat has them online).
    pub async fn connect(&self, replica: usize, person: &Person) -> WsClient {
        let mut ws = WsClient::authed(&self.ws_url(replica), &person.token).await;
        // A pong means the auth frame was handled.
        ws.send(json!({"type": "ping"})).await;
        let pong = ws.frame_of("pong").await;
        assert_eq!(pong["type"], "pong");
        ws
    }

    /// The one number `sql` selects (0 for NULL).
    pub fn n(&self, sql: &str) -> i64 {
        self.db
            .count(&format!("SELECT COALESCE(({sql})::bigint, 0) AS n"))
    }

    pub fn is_online(&self, staff: &Person) -> bool {
        self.n(&format!(
            "SELECT count(*) FROM agents WHERE user_id = '{}' AND online",
            staff.id
        )) == 1
    }

    pub async fn settings(&self, staff: &Person, max_active_rooms: i32) {
        let (status, body) = self
            .call(
                Method::PUT,
                "/staff/me/settings",
                &staff.token,
                Some(json!({"max_active_rooms": max_active_rooms, "notify_by_email": true})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    pub async fn room(&self, token: &str, room: &str) -> Value {
        let (status, body) = self
            .call(Method::GET, &format!("/rooms/{room}"), token, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

pub fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap_or_default().to_string()
}
