//! The actix scaffolding every service mounts.

pub mod extract;
pub mod health;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod pagination;
pub mod problem;
pub mod respond;
pub mod server;

use actix_web::web;

/// Extractor settings that turn malformed paths and queries into problem+json.
pub fn configure_extractors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(extract::path_config())
        .app_data(extract::query_config())
        .app_data(web::JsonConfig::default().limit(extract::JSON_LIMIT))
        // Our Json<T> reads the body as bytes: the limit it states must be
        // the one the payload extractor enforces.
        .app_data(web::PayloadConfig::new(extract::JSON_LIMIT));
}
