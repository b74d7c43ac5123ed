use domain::messages::{EmailJob, EmailTemplate, Envelope};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use testkit::{SmtpSink, TestBus, TestDatabase};
use worker::config::Config;

pub struct Worker {
    pub address: String,
    pub bus: TestBus,
    pub db: TestDatabase,
    server: actix_web::dev::ServerHandle,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

pub fn database() -> TestDatabase {
    TestDatabase::create(
        "worker",
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")),
        |conn| platform::db::migrate(conn, worker::MIGRATIONS, worker::MIGRATION_LOCK).map(|_| ()),
    )
    .unwrap()
}

pub fn config(db: &TestDatabase, bus: &TestBus, sink: Option<&SmtpSink>) -> Config {
    let mut config = Config::defaults().unwrap();
    config.common.host = "127.0.0.1".into();
    config.port = 0;
    config.database_url = SecretString::from(db.url().to_string());
    config.common.database_pool_size = 4;
    config.common.amqp_prefix = bus.prefix().to_string();
    config.common.retry_delays_ms = "100,200".into();
    config.public_base_url = "https://app.example.com".into();
    match sink {
        Some(sink) => {
            config.email_transport = worker::config::EmailTransport::Smtp;
            config.smtp_url = SecretString::from(sink.url());
        }
        None => {
            config.email_transport = worker::config::EmailTransport::File;
            config.email_outbox_dir = std::env::temp_dir()
                .join(format!("worker-test-{}", uuid::Uuid::new_v4().simple()))
                .display()
                .to_string();
        }
    }
    config
}

pub fn track(bus: &TestBus) {
    let delays = vec![Duration::from_millis(100), Duration::from_millis(200)];
    bus.track_consumer(&worker::email::handler::EmailHandler::spec(
        delays.clone(),
        16,
        8,
    ));
    bus.track_consumer(&worker::provisioning::ProvisioningHandler::spec(delays));
}

pub async fn start(config: Config, db: TestDatabase, bus: TestBus) -> Worker {
    platform::telemetry::init_for_tests("worker");
    track(&bus);
    let application = worker::startup::Application::build(config.clone())
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", application.port());
    let server = application.server_handle();
    tokio::spawn(application.run_until_stopped());
    let worker = Worker {
        address,
        bus,
        db,
        server,
    };
    let readyz = format!("{}/api/worker/readyz", worker.address);
    testkit::wait_until_ready(&reqwest::Client::new(), &readyz).await;
    worker
}

pub async fn smtp_worker(sink: &SmtpSink) -> Worker {
    let db = database();
    let bus = TestBus::new();
    let config = config(&db, &bus, Some(sink));
    start(config, db, bus).await
}

pub fn job(to: &str, template: EmailTemplate, vars: &[(&str, &str)]) -> Envelope<EmailJob> {
    Envelope::new(EmailJob {
        to: to.to_string(),
        template,
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        idempotency_key: uuid::Uuid::new_v4().to_string(),
    })
}

pub fn welcome(to: &str) -> Envelope<EmailJob> {
    job(to, EmailTemplate::Welcome, &[("display_name", "Ada")])
}

impl Worker {
    pub async fn send(&self, envelope: &Envelope<EmailJob>) {
        self.bus
            .publish_raw(
                "jobs",
                "email",
                &envelope.id.to_string(),
                "email",
                serde_json::to_vec(envelope).unwrap(),
            )
            .await
            .unwrap();
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.address))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn dead(&self, timeout: Duration) -> Option<testkit::amqp::Received> {
        self.bus.take("email.dead", timeout).await
    }
}

/// The value of a metric line, e.g. `email_jobs_total{outcome="retry",...}`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
