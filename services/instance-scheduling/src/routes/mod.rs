//! The route table of the scheduler, in one place: each handler carries
//! its method, path and answers (`#[utoipa::path]`), so routing, the 405
//! answers and the OpenAPI document all come from this list.

mod admin;
mod agents;
mod keys;
mod sessions;

use utoipa_actix_web::service_config::ServiceConfig;

pub const PREFIX: &str = "/api/scheduling";

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(sessions::allocate)
        .service(sessions::show_session)
        .service(sessions::end_session)
        .service(agents::register)
        .service(agents::heartbeat)
        .service(agents::session_connected)
        .service(admin::list_instances)
        .service(admin::drain_instance)
        .service(admin::fleet)
        .service(keys::jwks);
}
