//! Builds the worker from its configuration; used by `main` and the tests.

use crate::config::{Config, EmailTransport};
use crate::email::handler::{EmailHandler, EmailMetrics};
use crate::email::transport::Transport;
use bus::consumer::ConsumerMetrics;
use bus::Broker;
use platform::db::{self, PgPool};
use platform::http::health::ApiDocs;
use platform::http::metrics::Metrics;
use platform::http::server::{self, HttpSpec, Running};
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;

pub const OPENAPI: &str = include_str!("../openapi.json");

pub struct Application(Running);

/// Creates the database if needed, applies migrations and returns a pool
/// of `pool_size` connections.
pub fn migrate(config: &Config, pool_size: u32) -> anyhow::Result<PgPool> {
    db::prepare(
        config.database_url.expose_secret(),
        pool_size,
        crate::MIGRATIONS,
        crate::MIGRATION_LOCK,
    )
}

pub fn broker(config: &Config) -> Broker {
    Broker::new(
        config.common.amqp_url.expose_secret(),
        bus::Names::new(config.common.amqp_prefix.clone()),
        crate::SERVICE,
    )
}

fn transport(config: &Config) -> anyhow::Result<Transport> {
    match config.email_transport {
        EmailTransport::File => Transport::file(&config.email_outbox_dir),
        EmailTransport::Smtp => Transport::smtp(
            config.smtp_url.expose_secret(),
            config.smtp_password_file.as_deref(),
        ),
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || migrate(&config, config.common.database_pool_size))
                .await??
        };
        let broker = broker(&config);
        let metrics = Metrics::new(crate::SERVICE)?;
        let consumer_metrics = ConsumerMetrics::register(metrics.registry())?;
        let email = EmailHandler {
            pool: pool.clone(),
            transport: Arc::new(transport(&config)?),
            from: config.sender()?,
            base_url: config.public_base_url.clone(),
            metrics: EmailMetrics::register(metrics.registry())?,
            send_lease: std::time::Duration::from_secs(config.email_send_lease_secs),
        };
        let spec = HttpSpec {
            prefix: "/api/worker",
            readiness: bus::readiness(pool, broker.status.clone()),
            docs: ApiDocs {
                title: "worker",
                openapi_json: OPENAPI,
            },
            metrics,
            shutdown_grace: config.common.shutdown_grace(),
        };
        let listener = TcpListener::bind((config.common.host.as_str(), config.port))?;
        let mut running = server::serve(listener, spec, |_| {})?;

        let shutdown = running.shutdown();
        // One line per queue this worker consumes.
        running.spawn(bus::consumer::run(
            broker,
            EmailHandler::spec(
                config.retry_delays()?,
                config.email_prefetch,
                config.email_concurrency,
            )
            .metrics(consumer_metrics),
            Arc::new(email),
            shutdown,
        ));
        Ok(Self(running))
    }

    pub fn port(&self) -> u16 {
        self.0.port()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.0.run_until_stopped().await.map_err(Into::into)
    }

    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.0.server_handle()
    }
}
