//! Builds the agent from its configuration; used by `main` and by tests
//! alike (a test points `SCHEDULER_URL` at a scheduler of its own and runs
//! the agent in-process on port 0).

use crate::agent::{AgentLoop, Fatal};
use crate::config::Config;
use crate::metrics::AgentMetrics;
use crate::routes;
use crate::scheduler::{Registration, SchedulerClient};
use crate::state::{AgentState, Serving};
use crate::tokens::ConnectionTokens;
use actix_web::web;
use authn::JwksClient;
use platform::http::health::{ApiDocs, Readiness};
use platform::http::metrics::Metrics;
use platform::http::server::{self, HttpSpec, Running};
use std::net::TcpListener;
use std::sync::Arc;
use uuid::Uuid;

/// How the agent names itself in its API document and docs page.
pub const DOCS: ApiDocs = ApiDocs {
    title: "host agent API",
    description: "The agent on a compute instance: clients connect here with the connection token the scheduler handed them.",
};

/// The agent's API document, as it serves it at `/openapi.json`.
pub fn openapi() -> anyhow::Result<utoipa::openapi::OpenApi> {
    Ok(server::openapi(routes::PREFIX, DOCS, routes::configure)?)
}

/// Ready once registered, and until told to terminate. A draining agent
/// is still ready: it serves the sessions it has.
fn readiness(state: AgentState) -> Readiness {
    Readiness::new().check("registration", move || {
        let outcome = match state.serving() {
            Serving::Open | Serving::Draining => Ok(()),
            Serving::Registering => Err("not registered with the scheduler yet".to_string()),
            Serving::Terminating => Err("terminating".to_string()),
        };
        Box::pin(async move { outcome })
    })
}

pub struct Application {
    running: Running,
    state: AgentState,
    fatal: Fatal,
}

impl Application {
    /// Listens first, then registers in the background: the address the
    /// scheduler hands to clients answers as soon as it is registered.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = Metrics::new(crate::SERVICE)?;
        let agent_metrics = AgentMetrics::register(metrics.registry())?;
        let scheduler = SchedulerClient::new(&config.scheduler_url)?;
        let keys = Arc::new(JwksClient::new(scheduler.jwks_url()));
        let state = AgentState::new(scheduler, ConnectionTokens::new(keys), agent_metrics);

        let listener = TcpListener::bind((config.host.as_str(), config.port))?;
        let port = listener.local_addr()?.port();
        let spec = HttpSpec {
            prefix: routes::PREFIX,
            readiness: readiness(state.clone()),
            docs: DOCS,
            metrics,
            shutdown_grace: config.shutdown_grace(),
        };
        let app_state = state.clone();
        let mut running = server::serve(listener, spec, move |cfg| {
            cfg.app_data(web::Data::new(app_state.clone()))
                .configure(routes::configure);
        })?;

        let registration = Registration::new(
            &config.region,
            config.capacity,
            config.advertise_address(port),
            config.instance_id,
        );
        let fatal = Fatal::default();
        let agent = AgentLoop::new(
            state.clone(),
            registration,
            config.registration_secret.clone(),
            config.heartbeat_interval(),
            running.server_handle(),
            fatal.clone(),
            running.shutdown(),
        );
        running.spawn(agent.run());
        Ok(Self {
            running,
            state,
            fatal,
        })
    }

    pub fn port(&self) -> u16 {
        self.running.port()
    }

    /// The instance this agent registered as, once it has.
    pub fn instance_id(&self) -> Option<Uuid> {
        self.state.registered().map(|registered| registered.id)
    }

    /// For tests: what the handlers see.
    pub fn state(&self) -> &AgentState {
        &self.state
    }

    /// For tests: a handle that stops the server.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.running.server_handle()
    }

    /// Serves until SIGTERM or Ctrl-C (drained as every service is), until
    /// the scheduler says terminate (both `Ok`), or until registration is
    /// refused (`Err` with the reason).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application { running, fatal, .. } = self;
        running.run_until_stopped().await?;
        match fatal.take() {
            Some(reason) => Err(anyhow::anyhow!(reason)),
            None => Ok(()),
        }
    }
}
