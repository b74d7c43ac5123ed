//! Builds the application from its configuration; used by `main` and by the
//! tests alike.

use crate::config::Config;
use crate::events::InstanceEvents;
use crate::metrics::SchedulingMetrics;
use crate::reconciler;
use crate::routes;
use crate::state::AppState;
use actix_web::web;
use authn::{JwksClient, Verifier};
use bus::{Broker, OutboxRelay};
use platform::db::{self, PgPool};
use platform::http::health::ApiDocs;
use platform::http::metrics::Metrics;
use platform::http::server::{self, HttpSpec, Running};
use platform::periodic::Periodic;
use secrecy::ExposeSecret;
use signing::{Keyring, Secret};
use std::net::TcpListener;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How the service names itself in its API document and docs page.
pub const DOCS: ApiDocs = ApiDocs {
    title: "instance-scheduling API",
    description: "Compute instances for clients: allocation by load, connection tokens, host agents' registration and heartbeats, and the fleet.",
};

/// How often keys rotated elsewhere are picked up.
const KEY_RELOAD: Duration = Duration::from_secs(30);

/// The service's API document, as it serves it at
/// `/api/scheduling/openapi.json`.
pub fn openapi() -> anyhow::Result<utoipa::openapi::OpenApi> {
    Ok(server::openapi(routes::PREFIX, DOCS, routes::configure)?)
}

pub struct Application {
    running: Running,
}

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

/// The broker as this service names itself to it.
pub fn broker(config: &Config) -> Broker {
    Broker::new(
        config.common.amqp_url.expose_secret(),
        bus::Names::new(config.common.amqp_prefix.clone()),
        crate::SERVICE,
    )
}

/// `instance-scheduling rotate-keys`.
pub async fn rotate_keys(config: Config) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let pool = migrate(&config, db::COMMAND_POOL_SIZE)?;
        let mut conn = pool.get()?;
        let keys = signing::store::rotate(&mut conn, crate::KEYS_LOCK)?;
        let kids: Vec<&str> = keys.iter().map(|key| key.kid.as_str()).collect();
        println!(
            "signing key rotated; current kid {}, published kids {}",
            kids.first().copied().unwrap_or("-"),
            kids.join(", ")
        );
        Ok(())
    })
    .await?
}

/// Picks up keys rotated by another replica or `rotate-keys`.
async fn reload_keys(state: AppState) {
    match db::read(&state.pool, signing::store::load).await {
        Ok(stored) if !stored.is_empty() => match Keyring::from_stored(&stored) {
            Ok(keyring) => {
                if let Ok(mut current) = state.keyring.write() {
                    *current = keyring;
                }
            }
            Err(err) => tracing::error!(error = %err, "stored signing keys are unusable"),
        },
        Ok(_) => tracing::error!("no signing keys in the database"),
        Err(err) => tracing::warn!(error = %err, "could not reload signing keys"),
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let policy = Arc::new(config.policy()?);
        let pool = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || migrate(&config, config.common.database_pool_size))
                .await??
        };
        let stored = {
            let pool = pool.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let mut conn = pool.get()?;
                signing::store::ensure_one(&mut conn, crate::KEYS_LOCK)
            })
            .await??
        };
        let keyring = Arc::new(RwLock::new(Keyring::from_stored(&stored)?));
        let verifier = Verifier::new(
            &config.jwt_issuer,
            Arc::new(JwksClient::new(&config.auth_jwks_url)),
        );
        let broker = broker(&config);
        let relay = OutboxRelay::new(
            pool.clone(),
            broker.clone(),
            crate::topology(config.retry_delays()?),
        );
        let metrics = Metrics::new(crate::SERVICE)?;
        let scheduling_metrics = SchedulingMetrics::register(metrics.registry())?;
        let consumer_metrics = bus::consumer::ConsumerMetrics::register(metrics.registry())?;
        if config.registration_secret.expose_secret().chars().count()
            < crate::config::STRONG_SECRET_CHARS
        {
            tracing::warn!(
                "REGISTRATION_SECRET is shorter than {} characters: fine for development, weak anywhere else",
                crate::config::STRONG_SECRET_CHARS
            );
        }
        let registration_hash =
            Secret::from_client(config.registration_secret.expose_secret()).hash();
        let state = AppState {
            pool: pool.clone(),
            policy: policy.clone(),
            keyring,
            registration_hash: Arc::new(registration_hash),
            relay: relay.handle(),
            metrics: scheduling_metrics,
        };
        let spec = HttpSpec {
            prefix: routes::PREFIX,
            readiness: bus::readiness(pool.clone(), broker.status.clone()),
            docs: DOCS,
            metrics,
            shutdown_grace: config.common.shutdown_grace(),
        };
        let listener = TcpListener::bind((config.common.host.as_str(), config.port))?;
        let app_state = state.clone();
        let mut running = server::serve(listener, spec, move |cfg| {
            cfg.app_data(web::Data::new(app_state.clone()))
                .app_data(web::Data::new(verifier.clone()))
                .configure(routes::configure);
        })?;

        let shutdown = running.shutdown();
        running.spawn(relay.run(shutdown.clone()));
        running.spawn(bus::consumer::run(
            broker,
            InstanceEvents::spec(config.retry_delays()?).metrics(consumer_metrics),
            Arc::new(InstanceEvents::handler(pool)),
            shutdown.clone(),
        ));
        {
            let state = state.clone();
            running.spawn(Periodic::every("signing key reload", KEY_RELOAD).run(
                shutdown.clone(),
                move || {
                    let state = state.clone();
                    async move { reload_keys(state).await }
                },
            ));
        }
        {
            let state = state.clone();
            running.spawn(
                Periodic::every("reconciler", policy.reconcile_interval)
                    .only_in_leader(config.database_url.expose_secret(), crate::LEADER_LOCK)
                    .run(shutdown, move || {
                        let state = state.clone();
                        async move { reconciler::reconcile(&state).await }
                    }),
            );
        }
        Ok(Self { running })
    }

    pub fn port(&self) -> u16 {
        self.running.port()
    }

    /// Serves until SIGTERM or Ctrl-C, then lets background work finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.running.run_until_stopped().await.map_err(Into::into)
    }

    /// For tests: a handle that stops the server.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.running.server_handle()
    }
}
