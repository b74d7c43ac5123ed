use domain::Role;
use instance_scheduling::config::Config;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use testkit::{TestBus, TestDatabase, TestIssuer};
use uuid::Uuid;

pub const SECRET: &str = "registration-secret-for-tests";

/// Scheduler replicas on one test database and one set of AMQP names.
pub struct Scheduler {
    pub db: TestDatabase,

    pub bus: TestBus,
    pub issuer: TestIssuer,
    pub client: reqwest::Client,
    pub replicas: Vec<Replica>,
    pub config: Config,
}

pub struct Replica {
    pub url: String,
    server: actix_web::dev::ServerHandle,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for replica in &self.replicas {
            let server = replica.server.clone();
            tokio::spawn(async move { server.stop(false).await });
        }
    }
}

pub fn database() -> TestDatabase {
    TestDatabase::create(
        "scheduling",
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")),
        |conn| {
            platform::db::migrate(
                conn,
                instance_scheduling::MIGRATIONS,
                instance_scheduling::MIGRATION_LOCK,
            )
            .map(|_| ())
        },
    )
    .expect("test database")
}

pub async fn start() -> Scheduler {
    start_with(1, |_| {}).await
}

pub async fn start_with(replicas: usize, adjust: impl Fn(&mut Config)) -> Scheduler {
    platform::telemetry::init_for_tests("instance-scheduling");
    let bus = TestBus::new();
    bus.track_topology(&instance_scheduling::topology(vec![Duration::from_millis(
        50,
    )]));
    let issuer = TestIssuer::start("http://localhost/api/auth")
        .await
        .unwrap();
    let db = database();
    let mut config = Config::with_secret(SECRET).unwrap();
    config.common.host = "127.0.0.1".into();
    config.port = 0;
    config.database_url = SecretString::from(db.url().to_string());
    config.common.database_pool_size = 8;
    config.common.amqp_prefix = bus.prefix().to_string();
    config.common.shutdown_grace_secs = 0;
    config.auth_jwks_url = issuer.jwks_url().to_string();
    config.jwt_issuer = issuer.issuer().to_string();
    config.reconcile_interval_secs = 1;
    config.common.retry_delays_ms = "50".into();
    adjust(&mut config);
    let mut scheduler = Scheduler {
        db,
        bus,
        issuer,
        client: reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
        replicas: Vec::new(),
        config,
    };
    for _ in 0..replicas {
        scheduler.add_replica().await;
    }
    scheduler
}

/// A host agent as the scheduler sees it: its id and credential.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: Uuid,
    pub credential: String,
}

/// Someone with a token.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: Uuid,
    pub token: String,
}

impl Scheduler {
    pub async fn add_replica(&mut self) -> usize {
        let application = instance_scheduling::startup::Application::build(self.config.clone())
            .await
            .unwrap();
        let url = format!("http://127.0.0.1:{}", application.port());
        let server = application.server_handle();
        tokio::spawn(application.run_until_stopped());
        testkit::wait_until_ready(&self.client, &format!("{url}/api/scheduling/readyz")).await;
        self.replicas.push(Replica { url, server });
        self.replicas.len() - 1
    }

    pub fn url(&self, path: &str) -> String {
        self.url_on(0, path)
    }

    pub fn url_on(&self, replica: usize, path: &str) -> String {
        format!("{}/api/scheduling{path}", self.replicas[replica].url)
    }

    pub fn user(&self) -> Person {
        let id = Uuid::now_v7();
        Person {
            id,
            token: self.issuer.token(id, &[Role::User]),
        }
    }

    pub fn admin(&self) -> Person {
        let id = Uuid::now_v7();
        Person {
            id,
            token: self.issuer.token(id, &[Role::User, Role::Admin]),
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

    /// Registers an agent of `capacity` in `region` at `address`.
    pub async fn register(&self, region: &str, capacity: i64, address: &str) -> Agent {
        let (status, body) = self
            .call(
                Method::POST,
                "/instances/register",
                SECRET,
                Some(json!({"region": region, "capacity": capacity, "address": address})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Agent {
            id: body["id"].as_str().unwrap().parse().unwrap(),
            credential: body["credential"].as_str().unwrap().to_string(),
        }
    }

    /// A heartbeat of `agent` with these sessions connected; the answer.
    pub async fn heartbeat(&self, agent: &Agent, sessions: &[Uuid]) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/instances/{}/heartbeat", agent.id),
            &agent.credential,
            Some(json!({"cpu_pct": 12.5, "mem_pct": 40.0, "sessions": sessions})),
        )
        .await
    }

    pub async fn allocate(&self, person: &Person, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/sessions", &person.token, Some(body))
            .await
    }

    /// The one number `sql` selects (0 for NULL).
    pub fn n(&self, sql: &str) -> i64 {
        self.db
            .count(&format!("SELECT COALESCE(({sql})::bigint, 0) AS n"))
    }

    /// Runs statements on the scheduler's database.
    pub fn sql(&self, statements: &str) {
        use diesel::connection::SimpleConnection;
        self.db
            .connect()
            .unwrap()
            .batch_execute(statements)
            .unwrap();
    }

    /// Sets an instance's last heartbeat `secs` seconds in the past.
    pub fn age_heartbeat(&self, agent: &Agent, secs: i64) {
        self.sql(&format!(
            "UPDATE instances SET last_heartbeat_at = now() - interval '{secs} seconds' WHERE id = '{}'",
            agent.id
        ));
    }
}

/// A 4xx problem (400 for what does not parse, 422 for a value that is
/// wrong) that names `field`.
pub fn refused_naming(status: StatusCode, problem: &Value, field: &str) {
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
        "{status}: {problem}"
    );
    assert!(
        problem.to_string().contains(field),
        "the problem names {field}: {problem}"
    );
}

pub fn session_of(body: &Value) -> Uuid {
    body["session_id"].as_str().unwrap().parse().unwrap()
}
