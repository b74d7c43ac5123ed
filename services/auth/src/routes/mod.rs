//! The route table of the auth service, in one place.

mod jwks;
mod login;
mod logout;
mod password;
mod refresh;
mod register;
mod sessions;
mod verify_email;
mod visitors;

use actix_web::web;

pub const PREFIX: &str = "/api/auth";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(PREFIX)
            .route("/register", web::post().to(register::register))
            .route("/visitors", web::post().to(visitors::create_visitor))
            .route("/login", web::post().to(login::login))
            .route("/refresh", web::post().to(refresh::refresh))
            .route("/logout", web::post().to(logout::logout))
            .route("/logout-all", web::post().to(logout::logout_all))
            .route("/sessions", web::get().to(sessions::list))
            .route("/sessions/{id}", web::delete().to(sessions::revoke))
            .route("/password", web::post().to(password::change))
            .route("/password/forgot", web::post().to(password::forgot))
            .route("/password/reset", web::post().to(password::reset))
            .route("/verify-email", web::post().to(verify_email::verify))
            .route("/.well-known/jwks.json", web::get().to(jwks::jwks))
            .default_service(web::to(platform::http::problem::fallback(ROUTES))),
    );
}

/// Every route the service serves, for the gateway and docs checks.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/auth/register"),
    ("POST", "/api/auth/visitors"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/refresh"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/logout-all"),
    ("GET", "/api/auth/sessions"),
    ("DELETE", "/api/auth/sessions/{id}"),
    ("POST", "/api/auth/password"),
    ("POST", "/api/auth/password/forgot"),
    ("POST", "/api/auth/password/reset"),
    ("POST", "/api/auth/verify-email"),
    ("GET", "/api/auth/.well-known/jwks.json"),
    ("GET", "/api/auth/healthz"),
    ("GET", "/api/auth/readyz"),
    ("GET", "/api/auth/openapi.json"),
    ("GET", "/api/auth/docs"),
];
