use domain::messages::{Envelope, UserKind, UserRegistered};
use domain::Role;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use testkit::{TestBus, TestDatabase, TestIssuer};

/// The accounts service on a test's own database and AMQP names, with
/// testkit standing in for auth: it signs the access tokens (and serves
/// their JWKS) and publishes the `user.registered` events auth would.
pub struct Platform {
    pub accounts_url: String,
    pub client: reqwest::Client,
    pub bus: TestBus,
    pub db: TestDatabase,
    pub issuer: TestIssuer,
    server: actix_web::dev::ServerHandle,
}

impl Drop for Platform {
    fn drop(&mut self) {
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

pub fn accounts_database() -> TestDatabase {
    TestDatabase::create(
        "accounts",
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")),
        |conn| {
            platform::db::migrate(conn, accounts::MIGRATIONS, accounts::MIGRATION_LOCK).map(|_| ())
        },
    )
    .expect("test database")
}

pub async fn spawn() -> Platform {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(adjust: impl FnOnce(&mut accounts::config::Config)) -> Platform {
    platform::telemetry::init_for_tests("accounts");
    let bus = TestBus::new();
    bus.track_topology(&accounts::topology(vec![
        Duration::from_millis(50),
        Duration::from_millis(100),
    ]));
    let issuer = TestIssuer::start("http://localhost/api/auth")
        .await
        .unwrap();
    let db = accounts_database();
    let mut config = accounts::config::Config::defaults().unwrap();
    config.common.host = "127.0.0.1".into();
    config.port = 0;
    config.database_url = SecretString::from(db.url().to_string());
    config.common.database_pool_size = 4;
    config.common.amqp_prefix = bus.prefix().to_string();
    config.auth_jwks_url = issuer.jwks_url().to_string();
    config.jwt_issuer = issuer.issuer().to_string();
    config.common.retry_delays_ms = "50,100".into();
    adjust(&mut config);
    let app = accounts::startup::Application::build(config.clone())
        .await
        .unwrap();
    let accounts_url = format!("http://127.0.0.1:{}", app.port());
    let server = app.server_handle();
    tokio::spawn(app.run_until_stopped());

    let platform = Platform {
        accounts_url,
        client: reqwest::Client::new(),
        bus,
        db,
        issuer,
        server,
    };
    testkit::wait_until_ready(&platform.client, &platform.accounts("/readyz")).await;
    platform
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// Someone with a profile and an access token.
pub struct Person {
    pub id: String,
    pub email: String,
    pub token: String,
}

impl Platform {
    pub fn accounts(&self, path: &str) -> String {
        format!("{}/api/accounts{path}", self.accounts_url)
    }

    /// Announces a new user as auth does and waits for the profile.
    async fn registered(&self, email: Option<String>, roles: &[Role], kind: UserKind) -> Person {
        let id = uuid::Uuid::now_v7();
        let event = Envelope::new(UserRegistered {
            user_id: id,
            email: email.clone(),
            display_name: "Test User".into(),
            roles: roles.to_vec(),
            kind,
        });
        self.bus.publish(&event).await.unwrap();
        self.wait_for_profile(&id.to_string()).await;
        Person {
            id: id.to_string(),
            email: email.unwrap_or_default(),
            token: self.issuer.token(id, roles),
        }
    }

    pub async fn user(&self) -> Person {
        self.registered(Some(unique_email()), &[Role::User], UserKind::Registered)
            .await
    }

    /// An administrator, as `auth create-admin` makes one.
    pub async fn admin(&self) -> Person {
        self.registered(
            Some(unique_email()),
            &[Role::User, Role::Admin],
            UserKind::Admin,
        )
        .await
    }

    pub async fn visitor(&self) -> Person {
        self.registered(None, &[Role::Visitor], UserKind::Visitor)
            .await
    }

    /// A user whose roles an admin set to include staff, with the token
    /// auth would then issue.
    pub async fn staff(&self, admin: &Person) -> Person {
        let person = self.user().await;
        let response = self
            .call(
                Method::PUT,
                &format!("/users/{}/roles", person.id),
                &admin.token,
                Some(json!({"roles": ["user", "staff"]})),
            )
            .await;
        assert_eq!(response.status(), 200);
        let id = uuid::Uuid::parse_str(&person.id).unwrap();
        Person {
            token: self.issuer.token(id, &[Role::User, Role::Staff]),
            ..person
        }
    }

    pub async fn wait_for_profile(&self, id: &str) {
        let found = testkit::eventually(Duration::from_secs(10), || async {
            (self.count(&format!(
                "SELECT count(*) AS n FROM profiles WHERE id = '{id}'"
            )) == 1)
                .then_some(())
        })
        .await;
        assert!(found.is_some(), "profile {id} never appeared");
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        testkit::send_with_token(&self.client, method, &self.accounts(path), token, body).await
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.call(Method::GET, path, token, None).await
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db.count(sql)
    }

    pub fn execute(&self, sql: &str) {
        self.db.execute(sql)
    }
}

pub async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(content_type, "application/problem+json", "{body}");
    }
    (status, body)
}

pub fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
