//! The route table of the accounts service, in one place.

mod me;
mod users;

use actix_web::web;

pub const PREFIX: &str = "/api/accounts";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(PREFIX)
            .route("/me", web::get().to(me::show))
            .route("/me", web::patch().to(me::update))
            .route("/users", web::get().to(users::list))
            .route("/users/{id}", web::get().to(users::show))
            .route("/users/{id}/roles", web::put().to(users::set_roles))
            .route("/users/{id}/disable", web::post().to(users::disable))
            .route("/users/{id}/enable", web::post().to(users::enable))
            .default_service(web::to(platform::http::problem::fallback(ROUTES))),
    );
}

/// Every route the service serves, for the gateway and docs checks.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/accounts/me"),
    ("PATCH", "/api/accounts/me"),
    ("GET", "/api/accounts/users"),
    ("GET", "/api/accounts/users/{id}"),
    ("PUT", "/api/accounts/users/{id}/roles"),
    ("POST", "/api/accounts/users/{id}/disable"),
    ("POST", "/api/accounts/users/{id}/enable"),
    ("GET", "/api/accounts/healthz"),
    ("GET", "/api/accounts/readyz"),
    ("GET", "/api/accounts/openapi.json"),
    ("GET", "/api/accounts/docs"),
];
