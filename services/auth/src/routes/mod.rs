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

use utoipa_actix_web::service_config::ServiceConfig;

pub const PREFIX: &str = "/api/auth";

/// Each handler carries its method, path and answers (`#[utoipa::path]`):
/// routing, the 405 answers and the OpenAPI document all come from here.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(register::register)
        .service(visitors::create_visitor)
        .service(login::login)
        .service(refresh::refresh)
        .service(logout::logout)
        .service(logout::logout_all)
        .service(sessions::list_sessions)
        .service(sessions::revoke_session)
        .service(password::change_password)
        .service(password::forgot_password)
        .service(password::reset_password)
        .service(verify_email::verify_email)
        .service(jwks::jwks);
}
