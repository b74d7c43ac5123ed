use crate::domain::secret::Secret;
use crate::error::{Error, Result};
use crate::http;
use crate::state::AppState;
use crate::store::email_tokens::{self, Purpose};
use crate::store::{sessions, users};
use crate::throttling::{ensure_not_throttled, record_failures, throttle_keys};
use actix_web::post;
use actix_web::{web, HttpRequest, HttpResponse};
use authn::Caller;
use diesel::Connection;
use domain::messages::{EmailJob, EmailTemplate};
use domain::{Email, Password};
use platform::db;
use platform::http::extract::Json;
use platform::http::openapi::{BodyProblems, Unauthorized, Unavailable};
use platform::http::problem::ProblemBody;
use platform::http::respond::no_content;
use platform::Problem;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    current_password: String,
    new_password: String,
}

/// `POST /password`: changes the caller's password and ends their other
/// sessions. Wrong current passwords count towards the login throttle.
#[utoipa::path(
    tag = "passwords",
    security(("bearer" = [])),
    request_body = ChangeBody,
    responses(
        (status = 204, description = "Changed; the caller's other sessions ended"),
        (status = 429, description = "Too many wrong current passwords; see Retry-After", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unauthorized, Unavailable,
    )
)]
#[post("/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    body: Json<ChangeBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let new_password = Password::parse(&body.new_password)
        .map_err(|e| Problem::invalid_field("new_password", e.to_string()))?;
    http::live_session(&state, &caller).await?;
    let user_id = caller.user_id;
    let user = db::run(&state.pool, move |conn| {
        users::find(conn, user_id).map_err(Error::from)
    })
    .await?
    .ok_or_else(|| Problem::invalid_token("the user no longer exists"))?;
    let email = user
        .email
        .as_deref()
        .and_then(|e| Email::parse(e).ok())
        .ok_or_else(|| Problem::forbidden("this account has no password to change"))?;
    let keys = throttle_keys(&state, &email, &http::client_ip(&state, &req));
    ensure_not_throttled(&state, &keys).await?;
    if !state
        .hasher
        .verify(&body.current_password, user.password_hash.clone())
        .await?
    {
        record_failures(&state, &keys).await?;
        return Err(Problem::invalid_field("current_password", "is incorrect").into());
    }
    let hash = state.hasher.hash(&new_password).await?;
    let keep = caller.session_id;
    db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            users::set_password(conn, user_id, &hash)?;
            sessions::revoke_all(conn, user_id, Some(keep), "password_changed")?;
            email_tokens::invalidate(conn, user_id, Purpose::PasswordReset)
        })
        .map_err(Error::from)
    })
    .await?;
    Ok(no_content())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotBody {
    email: String,
}

/// `POST /password/forgot`: always 202, so it cannot tell whether an account
/// exists; a `password_reset` email job is queued when it does.
#[utoipa::path(
    tag = "passwords",
    request_body = ForgotBody,
    responses(
        (status = 202, description = "Accepted, whether or not the account exists; a `password_reset` email goes out if it does"),
        BodyProblems, Unavailable,
    )
)]
#[post("/password/forgot")]
pub async fn forgot_password(
    state: web::Data<AppState>,
    body: Json<ForgotBody>,
) -> Result<HttpResponse> {
    let email = Email::parse(&body.into_inner().email)
        .map_err(|e| Problem::invalid_field("email", e.to_string()))?;
    let queued = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let Some(user) = users::find_by_email(conn, email.as_str())? else {
                return Ok(false);
            };
            if !user.is_active() {
                return Ok(false);
            }
            let token = email_tokens::create(conn, user.user_id(), Purpose::PasswordReset)?;
            bus::outbox::enqueue(
                conn,
                EmailJob {
                    to: email.as_str().to_string(),
                    template: EmailTemplate::PasswordReset,
                    vars: BTreeMap::from([
                        ("display_name".to_string(), user.display_name.clone()),
                        ("token".to_string(), token.expose().to_string()),
                    ]),
                    idempotency_key: format!("password_reset:{}", uuid::Uuid::new_v4()),
                },
            )?;
            Ok::<_, diesel::result::Error>(true)
        })
        .map_err(Error::from)
    })
    .await?;
    if queued {
        state.relay.wake();
    }
    Ok(HttpResponse::Accepted()
        .insert_header(("cache-control", "no-store"))
        .json(serde_json::json!({
            "status": "accepted",
            "detail": "if an account exists for this email, a reset link has been sent"
        })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    token: String,
    new_password: String,
}

/// `POST /password/reset`: sets a new password with a single-use token and
/// ends every session of the user.
#[utoipa::path(
    tag = "passwords",
    request_body = ResetBody,
    responses(
        (status = 204, description = "The password is set; every session of the user ended"),
        BodyProblems, Unavailable,
    )
)]
#[post("/password/reset")]
pub async fn reset_password(
    state: web::Data<AppState>,
    body: Json<ResetBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    if body.token.is_empty() {
        return Err(Problem::invalid_field("token", "must not be empty").into());
    }
    let new_password = Password::parse(&body.new_password)
        .map_err(|e| Problem::invalid_field("new_password", e.to_string()))?;
    let hash = state.hasher.hash(&new_password).await?;
    let presented = Secret::from_client(&body.token);
    let reset = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let Some(user_id) = email_tokens::consume(conn, &presented, Purpose::PasswordReset)?
            else {
                return Ok(false);
            };
            users::set_password(conn, user_id, &hash)?;
            sessions::revoke_all(conn, user_id, None, "password_reset")?;
            email_tokens::invalidate(conn, user_id, Purpose::PasswordReset)?;
            Ok::<_, diesel::result::Error>(true)
        })
        .map_err(Error::from)
    })
    .await?;
    if reset {
        Ok(no_content())
    } else {
        Err(Problem::invalid_field("token", "is invalid, expired or already used").into())
    }
}
