use auth::config::Config;
use auth::startup::Application;
use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use testkit::{TestBus, TestDatabase};

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub config: Config,
    pub bus: TestBus,
    pub db: TestDatabase,
    server: actix_web::dev::ServerHandle,
}

pub fn test_config(db: &TestDatabase, bus: &TestBus) -> Config {
    let mut config = Config::defaults().expect("default config");
    config.common.host = "127.0.0.1".into();
    config.port = 0;
    config.database_url = SecretString::from(db.url().to_string());
    config.common.database_pool_size = 4;
    config.common.amqp_url = SecretString::from(bus.url());
    config.common.amqp_prefix = bus.prefix().to_string();
    // Cheap hashes keep the suite fast; the parameters are a setting, and
    // the hashing itself is tested with its own.
    config.argon2_memory_kib = 64;
    config.argon2_iterations = 1;
    config.cookie_secure = false;
    config.key_reload_secs = 1;
    config.common.retry_delays_ms = "50,100".into();
    config
}

pub fn migrations_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
}

pub fn fresh_database() -> TestDatabase {
    TestDatabase::create("auth", migrations_dir(), |conn| {
        platform::db::migrate(conn, auth::MIGRATIONS, auth::MIGRATION_LOCK).map(|_| ())
    })
    .expect("test database")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    platform::telemetry::init_for_tests("auth");
    let db = fresh_database();
    let bus = TestBus::new();
    bus.track_topology(&auth::topology(vec![
        Duration::from_millis(50),
        Duration::from_millis(100),
    ]));
    let mut config = test_config(&db, &bus);
    adjust(&mut config);
    start(config, db, bus).await
}

pub async fn start(config: Config, db: TestDatabase, bus: TestBus) -> TestApp {
    let application = Application::build(config.clone())
        .await
        .expect("application builds");
    let port = application.port();
    let server = application.server_handle();
    tokio::spawn(application.run_until_stopped());
    let app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: new_client(),
        config,
        bus,
        db,
        server,
    };
    app.wait_ready().await;
    app
}

pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop accepting; the database and queues are removed by their own drops.
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/auth{}", self.address, path)
    }

    async fn wait_ready(&self) {
        testkit::wait_until_ready(&self.client, &self.url("/readyz")).await;
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_with(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &Value,
    ) -> reqwest::Response {
        client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn register(&self, email: &str) -> Value {
        let response = self
            .post(
                "/register",
                &json!({"email": email, "password": PASSWORD, "display_name": "Test User"}),
            )
            .await;
        assert_eq!(response.status(), 201, "register {email}");
        response.json().await.expect("json")
    }

    /// Logs in with `client` (its cookie jar keeps the refresh token) and
    /// returns the access token.
    pub async fn login_with(
        &self,
        client: &reqwest::Client,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        self.post_with(
            client,
            "/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers and logs in; returns (client with refresh cookie, access token, user id).
    pub async fn signed_in_user(&self, email: &str) -> (reqwest::Client, String, String) {
        let user = self.register(email).await;
        let client = new_client();
        let response = self.login_with(&client, email, PASSWORD).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        (
            client,
            body["access_token"].as_str().expect("token").to_string(),
            user["user"]["id"].as_str().expect("id").to_string(),
        )
    }

    pub async fn refresh_with(&self, client: &reqwest::Client) -> reqwest::Response {
        client
            .post(self.url("/refresh"))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_authorized(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// The JSON body of an authorized GET.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        self.get_authorized(path, token)
            .await
            .json()
            .await
            .expect("a JSON body")
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db.count(sql)
    }

    pub fn execute(&self, sql: &str) {
        self.db.execute(sql)
    }

    /// Waits until the outbox has no unpublished rows.
    pub async fn outbox_drained(&self) {
        let drained = testkit::eventually(Duration::from_secs(10), || async {
            (self.count("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL") == 0)
                .then_some(())
        })
        .await;
        assert!(drained.is_some(), "outbox not drained");
    }

    /// The next email job for `to` on the email queue.
    pub async fn email_job(&self, to: &str) -> Value {
        for _ in 0..20 {
            if let Some(message) = self.bus.take("email", Duration::from_secs(5)).await {
                let json = message.json();
                if json["data"]["to"] == to {
                    return json;
                }
            }
        }
        panic!("no email job for {to}");
    }
}

pub async fn problem(response: reqwest::Response) -> (u16, HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(content_type, "application/problem+json", "{body}");
        assert_eq!(body["status"], status, "{body}");
    }
    (status, headers, body)
}

/// The field names a problem reports.
pub fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}
