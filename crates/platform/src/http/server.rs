//! The HTTP server every service runs, and the lifecycle around it: the
//! same middleware, extractor settings, health, metrics and docs routes, the
//! way down of [`super::lifecycle`], and background tasks that stop after
//! the server has drained.

use super::health::{self, ApiDocs, DocsPage, OpenApiJson, Readiness};
use super::lifecycle::{self, Lifecycle};
use super::metrics::Metrics;
use super::problem::RouteTable;
use crate::Shutdown;
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use std::net::TcpListener;
use std::time::Duration;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::AppExt;

/// What is the same for every service's HTTP server.
#[derive(Clone)]
pub struct HttpSpec {
    pub prefix: &'static str,
    pub readiness: Readiness,
    pub docs: ApiDocs,
    pub metrics: Metrics,
    /// After SIGTERM, how long to keep answering (draining) before new
    /// connections are refused (`SHUTDOWN_GRACE_SECS`).
    pub shutdown_grace: Duration,
}

/// Longest wait for long-lived connections to close after being told to.
const LONG_LIVED_CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// The service's routes: added to its scope, each handler annotated with
/// `#[utoipa::path]`, so that routing, the 405 answers and the OpenAPI
/// document all come from this one declaration.
pub type Configure = fn(&mut ServiceConfig);

/// The app every service serves: the shared middleware, extractor settings,
/// app data and operational routes, the service's routes from `configure`
/// in its scope, and the API document generated from all of them. Used by
/// [`serve`], and by tests that read the document without a server.
pub fn app<F>(
    spec: &HttpSpec,
    lifecycle: &Lifecycle,
    configure: F,
) -> (
    App<
        impl actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    >,
    utoipa::openapi::OpenApi,
)
where
    F: FnOnce(&mut ServiceConfig),
{
    let (app, mut api) = App::new()
        .wrap(from_fn(super::limits::request_head))
        .wrap(from_fn(lifecycle::close_connections_while_draining))
        .wrap(from_fn(super::middleware::request_telemetry))
        .app_data(web::Data::new(spec.metrics.clone()))
        .app_data(web::Data::new(lifecycle.clone()))
        .app_data(web::Data::new(spec.readiness.clone()))
        .app_data(web::Data::new(DocsPage(health::docs_page(
            spec.prefix,
            spec.docs.title,
        ))))
        .configure(super::configure_extractors)
        .into_utoipa_app()
        .openapi(super::openapi::base(spec.docs))
        .service(
            utoipa_actix_web::scope(spec.prefix)
                .configure(health::mount)
                .configure(configure),
        )
        .service(super::metrics::metrics)
        .split_for_parts();
    super::openapi::finish(&mut api);
    let routes = RouteTable::from_openapi(&api);
    let document = OpenApiJson(api.to_json().unwrap_or_default());
    let app = app
        .app_data(web::Data::new(routes))
        .app_data(web::Data::new(document))
        .default_service(web::to(super::problem::fallback));
    (app, api)
}

/// The API document of a service, as [`serve`] publishes it, without a
/// server (for tests and tools). `configure` may register app data its
/// routes need; none of it runs.
pub fn openapi<F>(
    prefix: &'static str,
    docs: ApiDocs,
    configure: F,
) -> Result<utoipa::openapi::OpenApi, prometheus::Error>
where
    F: FnOnce(&mut ServiceConfig),
{
    let spec = HttpSpec {
        prefix,
        readiness: Readiness::new(),
        docs,
        metrics: Metrics::new("openapi")?,
        shutdown_grace: Duration::ZERO,
    };
    Ok(app(&spec, &Lifecycle::default(), configure).1)
}

/// Starts serving on `listener`; `configure` adds the service's own app data
/// and routes. Signals are the service's own (see [`Running::run_until_stopped`]).
pub fn serve<F>(listener: TcpListener, spec: HttpSpec, configure: F) -> std::io::Result<Running>
where
    F: Fn(&mut ServiceConfig) + Send + Clone + 'static,
{
    let port = listener.local_addr()?.port();
    let lifecycle = Lifecycle::default();
    let grace = spec.shutdown_grace;
    let server = {
        let lifecycle = lifecycle.clone();
        HttpServer::new(move || app(&spec, &lifecycle, configure.clone()).0)
            .listen(listener)?
            .disable_signals()
            .shutdown_timeout(30)
            .run()
    };
    Ok(Running {
        port,
        server,
        background: Vec::new(),
        shutdown: Shutdown::new(),
        lifecycle,
        grace,
    })
}

/// A running service: its HTTP server and background tasks.
pub struct Running {
    port: u16,
    server: Server,
    background: Vec<tokio::task::JoinHandle<()>>,
    shutdown: Shutdown,
    lifecycle: Lifecycle,
    grace: Duration,
}

impl Running {
    /// The signal background tasks stop on (after the server has drained).
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Runs `task` until the service stops; it should watch the shutdown
    /// signal it was given.
    pub fn spawn<F>(&mut self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.background.push(tokio::spawn(task));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM or Ctrl-C, or until the server is stopped
    /// through its handle (tests). On a signal: drain (readiness 503,
    /// `Connection: close` on every answer), tell long-lived connections to
    /// go away and wait for them, keep answering for the grace period, then
    /// stop accepting and finish the requests in flight. Background tasks
    /// are signalled last and given 30 s.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Running {
            server,
            background,
            shutdown,
            lifecycle,
            grace,
            ..
        } = self;
        let handle = server.handle();
        // The way down runs beside the server, which must keep being polled
        // to drain and to act on the stop.
        let way_down = async {
            lifecycle::terminate_signal().await;
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "shutting down: draining"
            );
            lifecycle.drain();
            lifecycle.long_lived_closed(LONG_LIVED_CLOSE_LIMIT).await;
            tokio::time::sleep(grace).await;
            tracing::info!("shutting down: refusing new connections, finishing requests in flight");
            handle.stop(true).await;
            std::future::pending::<()>().await;
        };
        let result = tokio::select! {
            result = server => result,
            _ = way_down => Ok(()),
        };
        shutdown.trigger();
        for task in background {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
        result
    }
}
