//! Builds the application from its configuration; used by `main` and by the
//! tests alike.

use crate::config::Config;
use crate::consumers::UserEvents;
use crate::routes;
use crate::state::AppState;
use crate::store::profiles;
use actix_web::web;
use authn::{JwksClient, Verifier};
use bus::{Broker, OutboxRelay};
use platform::db::batch::{BatchLimits, BatchedReads};
use platform::db::{self, PgPool};
use platform::http::health::ApiDocs;
use platform::http::metrics::Metrics;
use platform::http::server::{self, HttpSpec, Running};
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// How the service names itself in its API document and docs page.
pub const DOCS: ApiDocs = ApiDocs {
    title: "accounts API",
    description: "The user directory; the authority for roles and account status.",
};

/// The service's API document, as it serves it at `/api/accounts/openapi.json`.
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
        let pool = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || migrate(&config, config.common.database_pool_size))
                .await??
        };
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
        let state = AppState {
            pool: pool.clone(),
            relay: relay.handle(),
            profiles: BatchedReads::start(
                pool.clone(),
                BatchLimits::default(),
                profiles::find_many,
            ),
            searches: Arc::new(Semaphore::new(config.search_concurrency)),
        };
        let spec = HttpSpec {
            prefix: routes::PREFIX,
            readiness: bus::readiness(pool.clone(), broker.status.clone()),
            docs: DOCS,
            metrics: Metrics::new(crate::SERVICE)?,
            shutdown_grace: config.common.shutdown_grace(),
        };
        let listener = TcpListener::bind((config.common.host.as_str(), config.port))?;
        let mut running = server::serve(listener, spec, move |cfg| {
            cfg.app_data(web::Data::new(state.clone()))
                .app_data(web::Data::new(verifier.clone()))
                .configure(routes::configure);
        })?;

        let shutdown = running.shutdown();
        running.spawn(relay.run(shutdown.clone()));
        running.spawn(bus::consumer::run(
            broker,
            UserEvents::spec(config.retry_delays()?),
            Arc::new(UserEvents::handler(pool)),
            shutdown,
        ));
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
