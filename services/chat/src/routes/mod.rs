//! The route table of the chat service, in one place: each handler
//! carries its method, path and answers (`#[utoipa::path]`), so routing,
//! the 405 answers and the OpenAPI document all come from this list.

mod bookmarks;
mod messages;
pub mod rooms;
mod staff;

use utoipa_actix_web::service_config::ServiceConfig;

pub const PREFIX: &str = "/api/chat";

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(rooms::open_room)
        .service(rooms::list_rooms)
        .service(rooms::show_room)
        .service(rooms::claim_room)
        .service(rooms::transfer_room)
        .service(rooms::set_priority)
        .service(rooms::close_room)
        .service(messages::list_messages)
        .service(messages::post_message)
        .service(staff::show_settings)
        .service(staff::update_settings)
        .service(staff::list_presence)
        .service(bookmarks::list_bookmarks)
        .service(bookmarks::show_bookmark)
        .service(bookmarks::put_bookmark)
        .service(bookmarks::delete_bookmark)
        .service(crate::ws::websocket);
}
