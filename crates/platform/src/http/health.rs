//! Liveness, readiness, metrics and API docs routes shared by every service.

use actix_web::{get, web, HttpResponse};
use futures_util::future::{join_all, BoxFuture};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The dependencies a service needs before it can serve traffic.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, CheckFn)>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn check<F>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
    {
        self.checks.push((name, Arc::new(check)));
        self
    }

    /// Runs every check (each bounded by a timeout); `Ok` when all pass.
    pub async fn run(&self) -> (bool, Map<String, Value>) {
        let results = join_all(self.checks.iter().map(|(name, check)| {
            let check = check.clone();
            async move {
                let outcome = tokio::time::timeout(Duration::from_secs(2), check())
                    .await
                    .unwrap_or_else(|_| Err("timed out".to_string()));
                (*name, outcome)
            }
        }))
        .await;
        let mut ready = true;
        let mut report = Map::new();
        for (name, outcome) in results {
            let value = match outcome {
                Ok(()) => "ok".to_string(),
                Err(err) => {
                    ready = false;
                    err
                }
            };
            report.insert(name.to_string(), Value::String(value));
        }
        (ready, report)
    }
}

/// The service's name in its API document and docs page.
#[derive(Clone, Copy)]
pub struct ApiDocs {
    pub title: &'static str,
    pub description: &'static str,
}

/// The API document, generated from the routes at startup, as served.
#[derive(Clone)]
pub struct OpenApiJson(pub String);

/// The docs page, for the service's prefix.
#[derive(Clone)]
pub struct DocsPage(pub String);

const SWAGGER_JS: &str = include_str!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &str = include_str!("../../assets/swagger-ui/swagger-ui.css");

/// Mounts `healthz`, `readyz`, `openapi.json` and `docs` in the service's
/// scope; `/metrics` is mounted beside the scope by the server.
pub fn mount(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(healthz)
        .service(readyz)
        .service(openapi_json)
        .service(docs)
        .service(docs_script)
        .service(docs_style);
}

pub(super) fn docs_page(prefix: &str, title: &str) -> String {
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{prefix}/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{prefix}/docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{ url: "{prefix}/openapi.json", dom_id: "#swagger-ui" }});
</script>
</body>
</html>
"##
    )
}

/// Alive: the process answers.
#[utoipa::path(tag = "operations", responses((status = 200, description = "The process is alive")))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready: the database and the broker are reachable and the replica is not
/// shutting down.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve; `checks` has `ok` for each dependency"),
        (status = 503, description = "Not ready: `checks` names the dependency that is down, or `status` is `draining`"),
    )
)]
#[get("/readyz")]
async fn readyz(
    readiness: web::Data<Readiness>,
    lifecycle: Option<web::Data<super::lifecycle::Lifecycle>>,
) -> HttpResponse {
    // A replica on its way down takes no new traffic, whatever its
    // dependencies say.
    if lifecycle.is_some_and(|l| l.is_draining()) {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"status": "draining", "checks": {}}));
    }
    let (ready, checks) = readiness.run().await;
    if ready {
        HttpResponse::Ok().json(json!({"status": "ready", "checks": checks}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "unavailable", "checks": checks}))
    }
}

/// This document, generated from the service's routes and types.
#[utoipa::path(tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document")))]
#[get("/openapi.json")]
async fn openapi_json(document: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.0.clone())
}

/// The API docs (Swagger UI, served from the binary: nothing loads from
/// the network).
#[utoipa::path(tag = "operations", responses((status = 200, description = "HTML page")))]
#[get("/docs")]
async fn docs(page: web::Data<DocsPage>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.0.clone())
}

/// The docs page's script.
#[utoipa::path(tag = "operations", responses((status = 200, description = "JavaScript")))]
#[get("/docs/swagger-ui-bundle.js")]
async fn docs_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript")
        .insert_header(("cache-control", "public, max-age=86400"))
        .body(SWAGGER_JS)
}

/// The docs page's style sheet.
#[utoipa::path(tag = "operations", responses((status = 200, description = "CSS")))]
#[get("/docs/swagger-ui.css")]
async fn docs_style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css")
        .insert_header(("cache-control", "public, max-age=86400"))
        .body(SWAGGER_CSS)
}
