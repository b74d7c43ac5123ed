use crate::domain::secret::Secret;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::email_tokens::{self, Purpose};
use crate::store::users;
use actix_web::post;
use actix_web::{web, HttpResponse};
use diesel::Connection;
use domain::messages::UserEmailVerified;
use platform::db;
use platform::http::extract::Json;
use platform::http::openapi::{BodyProblems, Unavailable};
use platform::http::respond::no_content;
use platform::Problem;
use serde::Deserialize;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    token: String,
}

/// `POST /verify-email`: marks the address verified; `user.email_verified`
/// leaves through the outbox.
#[utoipa::path(
    tag = "identity",
    request_body = VerifyBody,
    responses(
        (status = 204, description = "The address is verified; `user.email_verified`"),
        BodyProblems, Unavailable,
    )
)]
#[post("/verify-email")]
pub async fn verify_email(
    state: web::Data<AppState>,
    body: Json<VerifyBody>,
) -> Result<HttpResponse> {
    let token = body.into_inner().token;
    if token.is_empty() {
        return Err(Problem::invalid_field("token", "must not be empty").into());
    }
    let presented = Secret::from_client(&token);
    let verified = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let Some(user_id) = email_tokens::consume(conn, &presented, Purpose::VerifyEmail)?
            else {
                return Ok(false);
            };
            let Some(user) = users::mark_email_verified(conn, user_id)? else {
                return Ok(false);
            };
            bus::outbox::enqueue(
                conn,
                UserEmailVerified {
                    user_id: user.id,
                    email: user.email.clone().unwrap_or_default(),
                },
            )?;
            Ok::<_, diesel::result::Error>(true)
        })
        .map_err(Error::from)
    })
    .await?;
    if verified {
        state.relay.wake();
        Ok(no_content())
    } else {
        Err(Problem::invalid_field("token", "is invalid, expired or already used").into())
    }
}
