//! Builds the application from its configuration; used by `main` and by the
//! tests alike.

use crate::config::Config;
use crate::consumers::AccountEvents;
use crate::domain::keys::Keyring;
use crate::domain::password::Hasher;
use crate::routes;
use crate::state::AppState;
use crate::store::sessions;
use actix_web::web;
use authn::{StaticKeys, Verifier};
use bus::{Broker, OutboxRelay};
use platform::db::batch::{BatchLimits, BatchedReads};
use platform::db::{self, PgPool};
use platform::http::health::ApiDocs;
use platform::http::metrics::Metrics;
use platform::http::server::{self, HttpSpec, Running};
use platform::periodic::Periodic;
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How the service names itself in its API document and docs page.
pub const DOCS: ApiDocs = ApiDocs {
    title: "auth API",
    description: "Identities, passwords, sessions with rotating refresh tokens, access tokens and their keys.",
};

/// The service's API document, as it serves it at `/api/auth/openapi.json`.
pub fn openapi() -> anyhow::Result<utoipa::openapi::OpenApi> {
    Ok(server::openapi(routes::PREFIX, DOCS, routes::configure)?)
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

/// The broker as this service names itself to it.
pub fn broker(config: &Config) -> Broker {
    Broker::new(
        config.common.amqp_url.expose_secret(),
        bus::Names::new(config.common.amqp_prefix.clone()),
        crate::SERVICE,
    )
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let pool = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || migrate(&config, config.common.database_pool_size))
                .await??
        };
        let stored = {
            let pool = pool.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let mut conn = pool.get()?;
                signing::store::ensure_one(&mut conn, crate::domain::keys::KEYS_LOCK)
            })
            .await??
        };
        let keyring = Keyring::from_stored(&stored)?;
        let verification_keys = StaticKeys::default();
        verification_keys.replace(keyring.jwks());
        let verifier = Verifier::new(&config.jwt_issuer, Arc::new(verification_keys.clone()));

        let broker = broker(&config);
        let relay = OutboxRelay::new(
            pool.clone(),
            broker.clone(),
            crate::topology(config.retry_delays()?),
        );
        let hasher = Hasher::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
        )?;
        let state = AppState {
            config: config.clone(),
            pool: pool.clone(),
            hasher,
            keyring: Arc::new(RwLock::new(keyring)),
            relay: relay.handle(),
            session_pages: {
                let idle = config.session_idle_timeout();
                BatchedReads::start(pool.clone(), BatchLimits::default(), move |conn, pages| {
                    sessions::first_live_pages(conn, pages, idle)
                })
            },
        };
        let spec = HttpSpec {
            prefix: routes::PREFIX,
            readiness: bus::readiness(pool.clone(), broker.status.clone()),
            docs: DOCS,
            metrics: Metrics::new(crate::SERVICE)?,
            shutdown_grace: config.common.shutdown_grace(),
        };
        let listener = TcpListener::bind((config.common.host.as_str(), config.port))?;
        let mut running = {
            let state = state.clone();
            server::serve(listener, spec, move |cfg| {
                cfg.app_data(web::Data::new(state.clone()))
                    .app_data(web::Data::new(verifier.clone()))
                    .configure(routes::configure);
            })?
        };

        let shutdown = running.shutdown();
        let consumer_spec = AccountEvents::spec(config.retry_delays()?);
        running.spawn(relay.run(shutdown.clone()));
        running.spawn(bus::consumer::run(
            broker,
            consumer_spec,
            Arc::new(AccountEvents::handler(pool.clone())),
            shutdown.clone(),
        ));
        let reload = Periodic::every(
            "signing key reload",
            Duration::from_secs(config.key_reload_secs),
        );
        running.spawn(reload.run(shutdown, move || {
            reload_keys(state.clone(), verification_keys.clone())
        }));
        Ok(Self(running))
    }

    pub fn port(&self) -> u16 {
        self.0.port()
    }

    /// Serves until SIGTERM or Ctrl-C, then lets background work finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.0.run_until_stopped().await.map_err(Into::into)
    }

    /// For tests: a handle that stops the server.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.0.server_handle()
    }
}

/// Picks up keys rotated by `auth rotate-keys` (or another replica): one
/// tick of the reload loop.
async fn reload_keys(state: AppState, verification: StaticKeys) {
    let pool = state.pool.clone();
    let loaded = db::read(&pool, signing::store::load).await;
    match loaded {
        Ok(stored) if !stored.is_empty() => match Keyring::from_stored(&stored) {
            Ok(keyring) => {
                verification.replace(keyring.jwks());
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
