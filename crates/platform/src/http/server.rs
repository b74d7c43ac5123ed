//! The HTTP server every service runs, and the lifecycle around it: the
//! same middleware, extractor settings, health, metrics and docs routes, and
//! background tasks that stop after the server has drained.

use super::health::{self, ApiDocs, Readiness};
use super::metrics::Metrics;
use crate::Shutdown;
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use std::net::TcpListener;
use std::time::Duration;

/// What is the same for every service's HTTP server.
#[derive(Clone)]
pub struct HttpSpec {
    pub prefix: &'static str,
    pub readiness: Readiness,
    pub docs: ApiDocs,
    pub metrics: Metrics,
}

/// Starts serving on `listener`; `configure` adds the service's own app data
/// and routes.
pub fn serve<F>(listener: TcpListener, spec: HttpSpec, configure: F) -> std::io::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let server = HttpServer::new(move || {
        let spec = spec.clone();
        App::new()
            .wrap(from_fn(super::middleware::request_telemetry))
            .app_data(web::Data::new(spec.metrics.clone()))
            .configure(super::configure_extractors)
            .configure(|cfg| health::mount(cfg, spec.prefix, spec.readiness.clone(), spec.docs))
            .configure(configure.clone())
            .default_service(web::to(super::problem::not_found))
    })
    .listen(listener)?
    .shutdown_timeout(30)
    .run();
    Ok(server)
}

/// A running service: its HTTP server and background tasks.
pub struct Running {
    port: u16,
    server: Server,
    background: Vec<tokio::task::JoinHandle<()>>,
    shutdown: Shutdown,
}

impl Running {
    pub fn new(port: u16, server: Server, shutdown: Shutdown) -> Self {
        Self {
            port,
            server,
            background: Vec::new(),
            shutdown,
        }
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

    /// Serves until SIGTERM or Ctrl-C (actix drains in-flight requests),
    /// then signals the background tasks and waits for them to finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.shutdown.trigger();
        for task in self.background {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
        result
    }
}
