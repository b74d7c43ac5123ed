use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use testkit::{TestBus, TestDatabase};

pub const PASSWORD: &str = "correct horse battery";

/// auth and accounts running side by side on one test's AMQP names.
pub struct Platform {
    pub auth_url: String,
    pub accounts_url: String,
    pub auth_config: auth::config::Config,
    pub client: reqwest::Client,
    /// Kept for its drop: the test's AMQP names go when it ends.
    _bus: TestBus,
    pub db: TestDatabase,
    /// Kept for its drop: the database goes when the test ends.
    _auth_db: TestDatabase,
    servers: Vec<actix_web::dev::ServerHandle>,
    /// Chat's database, once `start_chat` ran.
    pub chat_db: Option<TestDatabase>,
    /// The scheduler's database, once `start_fleet` ran.
    pub scheduling_db: Option<TestDatabase>,
}

impl Drop for Platform {
    fn drop(&mut self) {
        for server in self.servers.drain(..) {
            tokio::spawn(async move { server.stop(false).await });
        }
    }
}

fn database(
    service: &str,
    dir: &str,
    migrate: fn(&mut diesel::PgConnection) -> anyhow::Result<()>,
) -> TestDatabase {
    TestDatabase::create(service, Path::new(dir), migrate).expect("test database")
}

fn accounts_database() -> TestDatabase {
    database(
        "accounts",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../services/accounts/migrations"
        ),
        |conn| {
            platform::db::migrate(conn, accounts::MIGRATIONS, accounts::MIGRATION_LOCK).map(|_| ())
        },
    )
}

pub fn auth_database() -> TestDatabase {
    database(
        "auth",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../services/auth/migrations"
        ),
        |conn| platform::db::migrate(conn, auth::MIGRATIONS, auth::MIGRATION_LOCK).map(|_| ()),
    )
}

pub async fn spawn() -> Platform {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(adjust: impl FnOnce(&mut accounts::config::Config)) -> Platform {
    spawn_configured(|_| {}, adjust).await
}

/// auth and accounts, each configuration adjusted before it starts.
pub async fn spawn_configured(
    adjust_auth: impl FnOnce(&mut auth::config::Config),
    adjust: impl FnOnce(&mut accounts::config::Config),
) -> Platform {
    platform::telemetry::init_for_tests("accounts");
    let bus = TestBus::new();
    let delays = vec![Duration::from_millis(50), Duration::from_millis(100)];
    bus.track_topology(&accounts::topology(delays.clone()));
    bus.track_topology(&auth::topology(delays));

    let auth_db = auth_database();
    let mut auth_config = auth::config::Config::defaults().unwrap();
    auth_config.common.host = "127.0.0.1".into();
    auth_config.port = 0;
    auth_config.database_url = SecretString::from(auth_db.url().to_string());
    auth_config.common.database_pool_size = 4;
    auth_config.common.amqp_prefix = bus.prefix().to_string();
    auth_config.argon2_memory_kib = 64;
    auth_config.argon2_iterations = 1;
    auth_config.cookie_secure = false;
    auth_config.common.retry_delays_ms = "50,100".into();
    adjust_auth(&mut auth_config);
    let auth_app = auth::startup::Application::build(auth_config.clone())
        .await
        .unwrap();
    let auth_url = format!("http://127.0.0.1:{}", auth_app.port());
    let mut servers = vec![auth_app.server_handle()];
    tokio::spawn(auth_app.run_until_stopped());

    let db = accounts_database();
    let mut config = accounts::config::Config::defaults().unwrap();
    config.common.host = "127.0.0.1".into();
    config.port = 0;
    config.database_url = SecretString::from(db.url().to_string());
    config.common.database_pool_size = 4;
    config.common.amqp_prefix = bus.prefix().to_string();
    config.auth_jwks_url = format!("{auth_url}/api/auth/.well-known/jwks.json");
    config.jwt_issuer = auth_config.jwt_issuer.clone();
    config.common.retry_delays_ms = "50,100".into();
    adjust(&mut config);
    let app = accounts::startup::Application::build(config.clone())
        .await
        .unwrap();
    let accounts_url = format!("http://127.0.0.1:{}", app.port());
    servers.push(app.server_handle());
    tokio::spawn(app.run_until_stopped());

    let platform = Platform {
        auth_url,
        accounts_url,
        auth_config,
        client: reqwest::Client::new(),
        _bus: bus,
        db,
        _auth_db: auth_db,
        servers,
        chat_db: None,
        scheduling_db: None,
    };
    for url in [platform.auth("/readyz"), platform.accounts("/readyz")] {
        testkit::wait_until_ready(&platform.client, &url).await;
    }
    platform
}

pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// A signed-in person: their id, access token and a client holding the refresh cookie.
pub struct Person {
    pub id: String,
    pub email: String,
    pub token: String,
    pub device: reqwest::Client,
}

impl Platform {
    pub fn auth(&self, path: &str) -> String {
        format!("{}/api/auth{path}", self.auth_url)
    }

    pub fn accounts(&self, path: &str) -> String {
        format!("{}/api/accounts{path}", self.accounts_url)
    }

    pub async fn login(&self, email: &str) -> Person {
        let device = new_client();
        let response = device
            .post(self.auth("/login"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "login {email}");
        let body: Value = response.json().await.unwrap();
        Person {
            id: body["user"]["id"].as_str().unwrap().to_string(),
            email: email.to_string(),
            token: body["access_token"].as_str().unwrap().to_string(),
            device,
        }
    }

    /// Registers through auth, waits for the profile in accounts, logs in.
    pub async fn user(&self) -> Person {
        let email = unique_email();
        let response = self
            .client
            .post(self.auth("/register"))
            .json(&json!({"email": email, "password": PASSWORD, "display_name": "Test User"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let person = self.login(&email).await;
        self.wait_for_profile(&person.id).await;
        person
    }

    /// An administrator made with `auth create-admin`.
    pub async fn admin(&self) -> Person {
        let email = unique_email();
        auth::cli::create_admin(
            self.auth_config.clone(),
            domain::Email::parse(&email).unwrap(),
            domain::DisplayName::parse("Admin").unwrap(),
            domain::Password::parse(PASSWORD).unwrap(),
        )
        .await
        .unwrap();
        let person = self.login(&email).await;
        self.wait_for_profile(&person.id).await;
        person
    }

    /// Refreshes until the access token carries `role` (auth learns roles from events).
    pub async fn refreshed_roles(&self, person: &Person, role: &str) -> Person {
        let token = testkit::eventually(Duration::from_secs(10), || async {
            let body: Value = person
                .device
                .post(self.auth("/refresh"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let has = body["user"]["roles"].as_array()?.iter().any(|r| r == role);
            has.then(|| body["access_token"].as_str().map(str::to_string))
                .flatten()
        })
        .await
        .unwrap_or_else(|| panic!("roles never included {role}"));
        Person {
            id: person.id.clone(),
            email: person.email.clone(),
            token,
            device: person.device.clone(),
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

    /// Starts chat beside auth and accounts, on their AMQP names, trusting
    /// auth's keys; returns its base URL.
    pub async fn start_chat(&mut self) -> String {
        let db = database(
            "chat",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../services/chat/migrations"
            ),
            |conn| platform::db::migrate(conn, chat::MIGRATIONS, chat::MIGRATION_LOCK).map(|_| ()),
        );
        self._bus
            .track_topology(&chat::topology(vec![Duration::from_millis(50)]));
        let mut config = chat::config::Config::defaults().unwrap();
        config.common.host = "127.0.0.1".into();
        config.port = 0;
        config.database_url = SecretString::from(db.url().to_string());
        config.common.database_pool_size = 4;
        config.common.amqp_prefix = self._bus.prefix().to_string();
        config.common.retry_delays_ms = "50".into();
        config.auth_jwks_url = self.auth("/.well-known/jwks.json");
        config.jwt_issuer = self.auth_config.jwt_issuer.clone();
        let app = chat::startup::Application::build(config).await.unwrap();
        let url = format!("http://127.0.0.1:{}", app.port());
        self.servers.push(app.server_handle());
        tokio::spawn(app.run_until_stopped());
        testkit::wait_until_ready(&self.client, &format!("{url}/api/chat/readyz")).await;
        self.chat_db = Some(db);
        url
    }

    /// Starts the scheduler (on auth's keys) and a worker that launches real
    /// host-agent processes for it, on this platform's AMQP names; the
    /// scheduler's base URL, and the worker's database.
    pub async fn start_fleet(
        &mut self,
        adjust: impl FnOnce(&mut instance_scheduling::config::Config),
    ) -> (String, TestDatabase) {
        const SECRET: &str = "registration-secret-for-e2e";
        let db = database(
            "scheduling",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../services/instance-scheduling/migrations"
            ),
            |conn| {
                platform::db::migrate(
                    conn,
                    instance_scheduling::MIGRATIONS,
                    instance_scheduling::MIGRATION_LOCK,
                )
                .map(|_| ())
            },
        );
        // The delays each service below is given, so that every retry
        // queue they declare is known and deleted with the test.
        self._bus
            .track_topology(&instance_scheduling::topology(vec![Duration::from_millis(
                50,
            )]));
        let worker_delays = vec![Duration::from_millis(100)];
        self._bus
            .track_consumer(&worker::provisioning::ProvisioningHandler::spec(
                worker_delays.clone(),
            ));
        self._bus
            .track_consumer(&worker::email::handler::EmailHandler::spec(
                worker_delays,
                16,
                8,
            ));
        let mut config = instance_scheduling::config::Config::with_secret(SECRET).unwrap();
        config.common.host = "127.0.0.1".into();
        config.port = 0;
        config.database_url = SecretString::from(db.url().to_string());
        config.common.database_pool_size = 4;
        config.common.amqp_prefix = self._bus.prefix().to_string();
        config.common.retry_delays_ms = "50".into();
        config.auth_jwks_url = self.auth("/.well-known/jwks.json");
        config.jwt_issuer = self.auth_config.jwt_issuer.clone();
        adjust(&mut config);
        let app = instance_scheduling::startup::Application::build(config)
            .await
            .unwrap();
        let url = format!("http://127.0.0.1:{}", app.port());
        self.servers.push(app.server_handle());
        tokio::spawn(app.run_until_stopped());
        testkit::wait_until_ready(&self.client, &format!("{url}/api/scheduling/readyz")).await;

        let worker_db = database(
            "worker",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../services/worker/migrations"
            ),
            |conn| {
                platform::db::migrate(conn, worker::MIGRATIONS, worker::MIGRATION_LOCK).map(|_| ())
            },
        );
        let mut worker_config = worker::config::Config::defaults().unwrap();
        worker_config.common.host = "127.0.0.1".into();
        worker_config.port = 0;
        worker_config.database_url = SecretString::from(worker_db.url().to_string());
        worker_config.common.database_pool_size = 4;
        worker_config.common.amqp_prefix = self._bus.prefix().to_string();
        worker_config.common.retry_delays_ms = "100".into();
        worker_config.email_outbox_dir = std::env::temp_dir()
            .join(format!("e2e-mail-{}", uuid::Uuid::new_v4().simple()))
            .display()
            .to_string();
        worker_config.registration_secret = Some(SECRET.to_string().into());
        worker_config.scheduler_url = url.clone();
        worker_config.host_agent_bin = Some(host_agent_binary());
        let base = 31_000 + (uuid::Uuid::new_v4().as_u128() % 1_500) as u16 * 10;
        worker_config.host_agent_ports = format!("{base}-{}", base + 9);
        let worker_app = worker::startup::Application::build(worker_config)
            .await
            .unwrap();
        self.servers.push(worker_app.server_handle());
        tokio::spawn(worker_app.run_until_stopped());
        self.scheduling_db = Some(db);
        (url, worker_db)
    }

    /// Stops every service of the platform and waits for them (their
    /// background work included): after this nothing launches agents.
    pub async fn stop(&mut self) {
        // Last started, first stopped: the worker before the scheduler, so
        // that no job is taken after the scheduler is gone.
        while let Some(server) = self.servers.pop() {
            server.stop(true).await;
        }
        // The services' loops end with their servers; a moment for the
        // worker to finish a job it had taken.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    /// Takes a job from the `email` queue of this platform's AMQP names,
    /// with its headers.
    pub async fn take_email_job(&self) -> Option<testkit::amqp::Received> {
        self._bus.take("email", Duration::from_secs(10)).await
    }

    /// Takes a job from the `email` queue of this platform's AMQP names.
    pub async fn take_email(&self) -> Option<Value> {
        self._bus
            .take("email", Duration::from_secs(10))
            .await
            .map(|job| job.json())
    }
}

/// The host-agent binary the workspace built.
pub fn host_agent_binary() -> String {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target"))
        });
    let binary = target.join("debug").join("host-agent");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace",
        binary.display()
    );
    binary.display().to_string()
}

/// A worker writing emails as files to a folder of its own, on `bus`.
pub async fn file_worker(bus: &TestBus) -> (actix_web::dev::ServerHandle, TestDatabase, String) {
    let db = database(
        "worker",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../services/worker/migrations"
        ),
        |conn| platform::db::migrate(conn, worker::MIGRATIONS, worker::MIGRATION_LOCK).map(|_| ()),
    );
    let mut config = worker::config::Config::defaults().unwrap();
    config.common.host = "127.0.0.1".into();
    config.port = 0;
    config.database_url = SecretString::from(db.url().to_string());
    config.common.database_pool_size = 4;
    config.common.amqp_prefix = bus.prefix().to_string();
    config.common.retry_delays_ms = "100".into();
    config.public_base_url = "https://app.example.com".into();
    config.email_transport = worker::config::EmailTransport::File;
    let outbox = std::env::temp_dir()
        .join(format!("e2e-mail-{}", uuid::Uuid::new_v4().simple()))
        .display()
        .to_string();
    config.email_outbox_dir = outbox.clone();
    bus.track_consumer(&worker::email::handler::EmailHandler::spec(
        vec![Duration::from_millis(100)],
        16,
        8,
    ));
    // The worker declares its provisioning queue too (its relay declares
    // the whole topology), even when it does not consume it.
    bus.track_consumer(&worker::provisioning::ProvisioningHandler::spec(vec![
        Duration::from_millis(100),
    ]));
    let app = worker::startup::Application::build(config).await.unwrap();
    let server = app.server_handle();
    tokio::spawn(app.run_until_stopped());
    (server, db, outbox)
}

/// The real Traefik, started by `scripts/gateway.sh` with the project's
/// local configuration (traefik/local) in front of this test's services.
/// Stopped when dropped.
pub struct Gateway {
    /// Where clients connect: `http://127.0.0.1:<port>`.
    pub url: String,
    /// Traefik's API (routers, middlewares, services) and ping.
    pub api_url: String,
    /// Where it sends each prefix.
    pub upstreams: Upstreams,
    process: tokio::process::Child,
    state: std::path::PathBuf,
}

/// The services a gateway routes to, by their base URLs.
#[derive(Default, Clone)]
pub struct Upstreams {
    pub auth: Option<String>,
    pub accounts: Option<String>,
    pub chat: Option<String>,
    pub scheduling: Option<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

impl Gateway {
    pub async fn start(upstreams: Upstreams) -> Gateway {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let state = std::env::temp_dir().join(format!("e2e-gateway-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&state).unwrap();
        let log = std::fs::File::create(state.join("traefik.log")).unwrap();
        let (port, api_port) = (free_port(), free_port());
        let mut command = tokio::process::Command::new(root.join("scripts/gateway.sh"));
        command
            .env("GATEWAY_PORT", port.to_string())
            .env("GATEWAY_API_PORT", api_port.to_string())
            .env("GATEWAY_STATE_DIR", &state)
            .env("GATEWAY_LOG_LEVEL", "INFO")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        // An upstream left out points at a port where nothing listens.
        let closed = format!("http://127.0.0.1:{}", free_port());
        for (variable, url) in [
            ("AUTH_UPSTREAM", &upstreams.auth),
            ("ACCOUNTS_UPSTREAM", &upstreams.accounts),
            ("CHAT_UPSTREAM", &upstreams.chat),
            ("SCHEDULING_UPSTREAM", &upstreams.scheduling),
        ] {
            command.env(variable, url.as_deref().unwrap_or(&closed));
        }
        let process = command
            .spawn()
            .expect("scripts/gateway.sh (run scripts/bootstrap.sh)");
        let gateway = Gateway {
            url: format!("http://127.0.0.1:{port}"),
            api_url: format!("http://127.0.0.1:{api_port}"),
            upstreams,
            process,
            state,
        };
        gateway.wait_for_routes().await;
        gateway
    }

    /// Until Traefik answers its ping and has loaded the five routers.
    async fn wait_for_routes(&self) {
        let client = reqwest::Client::new();
        let loaded = testkit::eventually(Duration::from_secs(20), || async {
            let routers: Value = client
                .get(format!("{}/api/http/routers", self.api_url))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let enabled = routers
                .as_array()?
                .iter()
                .filter(|r| r["provider"] == "file" && r["status"] == "enabled")
                .count();
            (enabled == 5).then_some(())
        })
        .await;
        assert!(
            loaded.is_some(),
            "Traefik did not load the routes: {}",
            self.log()
        );
    }

    /// What Traefik wrote so far (its own log and the access log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("traefik.log")).unwrap_or_default()
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
