//! Builds the application from its configuration; used by `main` and by the
//! tests alike.

use crate::config::Config;
use crate::conversation;
use crate::directory::PeopleEvents;
use crate::live::hub::Hub;
use crate::live::{self, Live, LiveHandler};
use crate::metrics::ChatMetrics;
use crate::presence;
use crate::routes;
use crate::state::AppState;
use actix_web::web;
use authn::{JwksClient, Verifier};
use bus::fanout::FanoutPublisher;
use bus::{Broker, OutboxRelay};
use platform::db::{self, PgPool};
use platform::http::health::ApiDocs;
use platform::http::metrics::Metrics;
use platform::http::server::{self, HttpSpec, Running};
use platform::periodic::Periodic;
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How the service names itself in its API document and docs page.
pub const DOCS: ApiDocs = ApiDocs {
    title: "chat API",
    description: "Support chat: rooms, messages, assignment to staff, presence, and the WebSocket at /api/chat/ws.",
};

/// Frames waiting for the broker before new ones are dropped.
const LIVE_PUBLISH_QUEUE: usize = 16_384;
/// How often the leader sweeps presence and drains the queue.
const LEADER_PERIOD: Duration = Duration::from_secs(1);

/// The service's API document, as it serves it at `/api/chat/openapi.json`.
pub fn openapi() -> anyhow::Result<utoipa::openapi::OpenApi> {
    Ok(server::openapi(routes::PREFIX, DOCS, routes::configure)?)
}

/// While the broker was away, live frames from other replicas were lost
/// (this replica's queue went with its connection): each time the live
/// consumer is back, every connection fetches what it missed from the
/// database.
async fn resync_after_reconnects(
    connected: Arc<tokio::sync::Notify>,
    hub: Arc<Hub>,
    shutdown: platform::Shutdown,
) {
    loop {
        tokio::select! {
            _ = connected.notified() => hub.resync_all(),
            _ = shutdown.wait() => return,
        }
    }
}

pub struct Application {
    running: Running,
    state: AppState,
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
        let metrics = Metrics::new(crate::SERVICE)?;
        let chat_metrics = ChatMetrics::register(metrics.registry())?;
        let consumer_metrics = bus::consumer::ConsumerMetrics::register(metrics.registry())?;
        let replica = Uuid::new_v4();
        let hub = Arc::new(Hub::new(chat_metrics.clone()));
        let (publisher, publishing) = FanoutPublisher::new(
            broker.clone(),
            live::exchange(),
            LIVE_PUBLISH_QUEUE,
            chat_metrics.live_dropped.clone(),
        );
        let state = AppState {
            drains: Default::default(),
            pool: pool.clone(),
            messages: conversation::message_writer(pool.clone()),
            relay: relay.handle(),
            live: Live::new(replica, hub.clone(), publisher),
            metrics: chat_metrics,
            limits: config.ws_limits(),
            presence: config.presence_timing(),
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
        running.spawn(publishing.run(shutdown.clone()));
        let live_connected = Arc::new(tokio::sync::Notify::new());
        running.spawn(bus::consumer::run(
            broker.clone(),
            live::spec(replica)
                .metrics(consumer_metrics.clone())
                .on_connected(live_connected.clone()),
            Arc::new(LiveHandler {
                replica,
                hub: hub.clone(),
            }),
            shutdown.clone(),
        ));
        running.spawn(resync_after_reconnects(
            live_connected,
            hub,
            shutdown.clone(),
        ));
        running.spawn(bus::consumer::run(
            broker,
            PeopleEvents::spec(config.retry_delays()?).metrics(consumer_metrics),
            Arc::new(PeopleEvents::handler(pool)),
            shutdown.clone(),
        ));
        let timing = config.presence_timing();
        {
            let state = state.clone();
            running.spawn(
                Periodic::every("replica heartbeat", timing.heartbeat)
                    .jitter(0.1)
                    .run(shutdown.clone(), move || {
                        let state = state.clone();
                        async move { presence::heartbeat(&state).await }
                    }),
            );
        }
        {
            let state = state.clone();
            running.spawn(
                Periodic::every("presence and queue", LEADER_PERIOD)
                    .only_in_leader(config.database_url.expose_secret(), crate::LEADER_LOCK)
                    .run(shutdown.clone(), move || {
                        let state = state.clone();
                        async move { presence::lead(&state).await }
                    }),
            );
        }
        {
            let state = state.clone();
            running.spawn(async move {
                shutdown.wait().await;
                presence::leave(&state).await;
            });
        }
        Ok(Self { running, state })
    }

    pub fn port(&self) -> u16 {
        self.running.port()
    }

    /// This replica's id (its queue is `chat.live.<id>`).
    pub fn replica(&self) -> Uuid {
        self.state.replica()
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
