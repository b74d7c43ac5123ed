use crate::error::{Error, Result};
use crate::http;
use crate::http::TokenAnswer;
use crate::state::AppState;
use crate::store::sessions::{self, Rotation};
use actix_web::http::StatusCode;
use actix_web::post;
use actix_web::{web, HttpRequest, HttpResponse};
use diesel::Connection;
use platform::db;
use platform::http::openapi::Unavailable;
use platform::http::problem::ProblemBody;
use platform::Problem;

fn rejected(state: &AppState, detail: &str) -> HttpResponse {
    let mut response = Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
        "Invalid refresh token",
    )
    .detail(detail)
    .to_response();
    let _ = response.add_cookie(&http::cleared_cookie(state));
    response
}

/// `POST /refresh`: rotates the refresh cookie and issues a new access token
/// with the user's current roles.
#[utoipa::path(
    tag = "sessions",
    responses(
        (status = 200, description = "A new access token; the cookie is rotated", body = TokenAnswer),
        (status = 401, description = "No, an expired or a reused refresh token (a reuse ends the session)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "A cross-site request", body = ProblemBody, content_type = "application/problem+json"),
        Unavailable,
    )
)]
#[post("/refresh")]
pub async fn refresh(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    http::refuse_cross_site(&state, &req)?;
    let Some(presented) = http::presented_refresh(&req) else {
        return Ok(rejected(&state, "no refresh token cookie"));
    };
    let idle = state.idle_timeout();
    let rotation = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| sessions::rotate(conn, &presented, idle))
            .map_err(Error::from)
    })
    .await?;
    match rotation {
        Rotation::Rotated(r) => {
            http::tokens(&state, StatusCode::OK, &r.user, &r.session, &r.secret)
        }
        Rotation::Reused => {
            tracing::warn!("refresh token reuse detected; session revoked");
            Ok(rejected(
                &state,
                "this refresh token was already used; the session has been revoked",
            ))
        }
        Rotation::Rejected => Ok(rejected(
            &state,
            "the refresh token is not valid or its session has ended",
        )),
    }
}
