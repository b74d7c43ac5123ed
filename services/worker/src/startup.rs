//! Builds the worker from its configuration; used by `main` and the tests.

use crate::config::{Config, EmailTransport};
use crate::email::handler::{EmailHandler, EmailMetrics};
use crate::email::transport::Transport;
use crate::provisioning::process::{ProcessProvider, ProcessSettings};
use crate::provisioning::{ProvisioningHandler, ProvisioningMetrics};
use bus::consumer::ConsumerMetrics;
use bus::{Broker, OutboxRelay};
use platform::db::advisory::{self, LockSession};
use platform::db::{self, PgPool};
use platform::http::health::ApiDocs;
use platform::http::metrics::Metrics;
use platform::http::server::{self, HttpSpec, Running};
use platform::periodic::Periodic;
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// How the worker names itself in its API document and docs page (it
/// serves only health, readiness and metrics).
pub const DOCS: ApiDocs = ApiDocs {
    title: "worker",
    description:
        "Consumes the email and provisioning queues; serves health, readiness and metrics.",
};

/// The worker's routes live under this prefix.
pub const PREFIX: &str = "/api/worker";

/// The worker's API document, as it serves it at `/api/worker/openapi.json`.
pub fn openapi() -> anyhow::Result<utoipa::openapi::OpenApi> {
    Ok(server::openapi(PREFIX, DOCS, |_| {})?)
}

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

/// What the worker declares on the broker: the job queues it consumes.
pub fn topology(config: &Config) -> Result<bus::Topology, platform::ConfigError> {
    Ok(bus::Topology::new()
        .consumer(&EmailHandler::spec(
            config.retry_delays()?,
            config.email_prefetch,
            config.email_concurrency,
        ))
        .consumer(&ProvisioningHandler::spec(config.retry_delays()?)))
}

/// How often agents whose process is gone unnoticed are looked for.
const AGENT_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
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

/// Takes the advisory lock that marks this worker process alive (a random
/// key its claims carry): free again the moment the process dies.
async fn hold_liveness_lock(config: &Config) -> anyhow::Result<LockSession> {
    let mut liveness =
        LockSession::new(config.database_url.expose_secret(), advisory::random_key());
    if !liveness.hold().await? {
        anyhow::bail!("could not take this worker's liveness lock");
    }
    Ok(liveness)
}

/// Keeps the liveness lock held (a restarted database ends its session)
/// for as long as the consumer runs, in-flight jobs included; the session
/// closes, and the lock is free, only once the consumer is done.
async fn keep_liveness_lock(mut liveness: LockSession, consumer: JoinHandle<()>) {
    let mut consumer = std::pin::pin!(consumer);
    loop {
        tokio::select! {
            _ = &mut consumer => return,
            _ = tokio::time::sleep(LIVENESS_CHECK) => {
                match liveness.hold().await {
                    Ok(true) => {}
                    // Only this process ever takes its random key; another
                    // holder means the lock was lost and is being retaken.
                    Ok(false) => tracing::warn!("the liveness lock is held elsewhere; trying again"),
                    Err(err) => tracing::warn!(error = %err, "the liveness lock is lost until the database is back"),
                }
            }
        }
    }
}

/// How often the liveness lock's session is checked.
const LIVENESS_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || migrate(&config, config.common.database_pool_size))
                .await??
        };
        let broker = broker(&config);
        let liveness = hold_liveness_lock(&config).await?;
        let metrics = Metrics::new(crate::SERVICE)?;
        let consumer_metrics = ConsumerMetrics::register(metrics.registry())?;
        let email = EmailHandler {
            pool: pool.clone(),
            transport: Arc::new(transport(&config)?),
            from: config.sender()?,
            base_url: config.public_base_url.clone(),
            metrics: EmailMetrics::register(metrics.registry())?,
            owner: liveness.key(),
            sending: Default::default(),
        };
        let relay = OutboxRelay::new(pool.clone(), broker.clone(), topology(&config)?);
        let provisioning = match config.provisioning()? {
            Some(settings) => Some(Arc::new(ProcessProvider::new(
                pool.clone(),
                ProcessSettings {
                    binary: settings.binary,
                    ports: settings.ports,
                    scheduler_url: settings.scheduler_url,
                    registration_secret: settings.registration_secret,
                    host: host_name(),
                },
                relay.handle(),
            ))),
            None => {
                tracing::warn!(
                    "REGISTRATION_SECRET is unset: this worker does not consume `provisioning`"
                );
                None
            }
        };
        let provisioning_metrics = ProvisioningMetrics::register(metrics.registry())?;
        let spec = HttpSpec {
            prefix: PREFIX,
            readiness: bus::readiness(pool.clone(), broker.status.clone()),
            docs: DOCS,
            metrics,
            shutdown_grace: config.common.shutdown_grace(),
        };
        let listener = TcpListener::bind((config.common.host.as_str(), config.port))?;
        let mut running = server::serve(listener, spec, |_| {})?;

        let shutdown = running.shutdown();
        let relay_handle = relay.handle();
        running.spawn(relay.run(shutdown.clone()));
        // One consumer per queue this worker consumes.
        if let Some(provider) = provisioning {
            running.spawn(bus::consumer::run(
                broker.clone(),
                ProvisioningHandler::spec(config.retry_delays()?).metrics(consumer_metrics.clone()),
                Arc::new(ProvisioningHandler {
                    pool: pool.clone(),
                    provider: provider.clone(),
                    relay: relay_handle,
                    metrics: provisioning_metrics,
                }),
                shutdown.clone(),
            ));
            running.spawn(Periodic::every("agent sweep", AGENT_SWEEP).run(
                shutdown.clone(),
                move || {
                    let provider = provider.clone();
                    async move { provider.sweep().await }
                },
            ));
        }
        let consumer = tokio::spawn(bus::consumer::run(
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
        running.spawn(keep_liveness_lock(liveness, consumer));
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
