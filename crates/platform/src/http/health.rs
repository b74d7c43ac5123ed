//! Liveness, readiness, metrics and API docs routes shared by every service.

use super::metrics::metrics_handler;
use actix_web::{web, HttpResponse};
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

/// The service's static API description and the docs page that renders it.
#[derive(Clone, Copy)]
pub struct ApiDocs {
    pub title: &'static str,
    pub openapi_json: &'static str,
}

const SWAGGER_JS: &str = include_str!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &str = include_str!("../../assets/swagger-ui/swagger-ui.css");

/// Mounts `{prefix}/healthz`, `{prefix}/readyz`, `{prefix}/openapi.json`,
/// `{prefix}/docs` and `/metrics`.
pub fn mount(cfg: &mut web::ServiceConfig, prefix: &str, readiness: Readiness, docs: ApiDocs) {
    let readiness = web::Data::new(readiness);
    cfg.route(&format!("{prefix}/healthz"), web::get().to(healthz))
        .service(
            web::resource(format!("{prefix}/readyz"))
                .app_data(readiness)
                .route(web::get().to(readyz)),
        )
        .route("/metrics", web::get().to(metrics_handler))
        .route(
            &format!("{prefix}/openapi.json"),
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(docs.openapi_json)
            }),
        )
        .route(
            &format!("{prefix}/docs"),
            web::get().to({
                let page = docs_page(prefix, docs.title);
                move || {
                    let page = page.clone();
                    async move {
                        HttpResponse::Ok()
                            .content_type("text/html; charset=utf-8")
                            .body(page)
                    }
                }
            }),
        )
        .route(
            &format!("{prefix}/docs/swagger-ui-bundle.js"),
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("application/javascript")
                    .insert_header(("cache-control", "public, max-age=86400"))
                    .body(SWAGGER_JS)
            }),
        )
        .route(
            &format!("{prefix}/docs/swagger-ui.css"),
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("text/css")
                    .insert_header(("cache-control", "public, max-age=86400"))
                    .body(SWAGGER_CSS)
            }),
        );
}

fn docs_page(prefix: &str, title: &str) -> String {
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

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

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
