//! The route table of the accounts service, in one place: each handler
//! carries its method, path and answers (`#[utoipa::path]`), so routing,
//! the 405 answers and the OpenAPI document all come from this list.

mod me;
mod users;

use utoipa_actix_web::service_config::ServiceConfig;

pub const PREFIX: &str = "/api/accounts";

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(me::show_me)
        .service(me::update_me)
        .service(users::list_users)
        .service(users::show_user)
        .service(users::set_roles)
        .service(users::disable)
        .service(users::enable);
}
