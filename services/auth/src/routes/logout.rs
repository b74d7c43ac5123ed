use crate::error::{Error, Result};
use crate::http;
use crate::state::AppState;
use crate::store::sessions;
use actix_web::post;
use actix_web::{web, HttpRequest, HttpResponse};
use authn::Caller;
use platform::db;
use platform::http::openapi::{Unauthorized, Unavailable};
use platform::http::problem::ProblemBody;
use platform::http::respond::no_content;
use platform::Problem;

/// `POST /logout`: ends the session of the bearer token, or else of the
/// refresh cookie, and clears the cookie.
#[utoipa::path(
    tag = "sessions",
    responses(
        (status = 204, description = "The session ended; the cookie is cleared"),
        (status = 403, description = "A cross-site request", body = ProblemBody, content_type = "application/problem+json"),
        Unauthorized, Unavailable,
    )
)]
#[post("/logout")]
pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    http::refuse_cross_site(&state, &req)?;
    let session_id = match Caller::optional(&req).await? {
        Some(caller) => Some(caller.session_id),
        None => match http::presented_refresh(&req) {
            Some(presented) => {
                db::run(&state.pool, move |conn| {
                    sessions::find_by_refresh(conn, &presented).map_err(Error::from)
                })
                .await?
            }
            None => {
                return Err(Problem::unauthorized(
                    "a bearer token or the refresh cookie is required",
                )
                .into())
            }
        },
    };
    if let Some(session_id) = session_id {
        db::run(&state.pool, move |conn| {
            sessions::revoke(conn, session_id, "logout").map_err(Error::from)
        })
        .await?;
    }
    let mut response = no_content();
    let _ = response.add_cookie(&http::cleared_cookie(&state));
    Ok(response)
}

/// `POST /logout-all`: ends every session of the caller.
#[utoipa::path(
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session of the caller ended"),
        Unauthorized, Unavailable,
    )
)]
#[post("/logout-all")]
pub async fn logout_all(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    http::live_session(&state, &caller).await?;
    let user_id = caller.user_id;
    db::run(&state.pool, move |conn| {
        sessions::revoke_all(conn, user_id, None, "logout_all").map_err(Error::from)
    })
    .await?;
    let mut response = no_content();
    let _ = response.add_cookie(&http::cleared_cookie(&state));
    Ok(response)
}
