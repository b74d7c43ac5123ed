use crate::error::{Error, Result};
use crate::http;
use crate::http::TokenAnswer;
use crate::state::AppState;
use crate::store::{sessions, throttle, users};
use crate::throttling::{record_failures, throttle_keys};
use actix_web::http::StatusCode;
use actix_web::post;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::Email;
use platform::db;
use platform::http::extract::Json;
use platform::http::openapi::{BodyProblems, Unavailable};
use platform::http::problem::ProblemBody;
use platform::Problem;
use serde::Deserialize;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
}

fn invalid_credentials() -> Error {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "Invalid credentials",
    )
    .detail("the email or password is incorrect")
    .into()
}

/// `POST /login`. An unknown email and a wrong password get the same answer
/// after the same work (a dummy hash is verified).
#[utoipa::path(
    tag = "sessions",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in; the refresh token is in the `refresh_token` cookie", body = TokenAnswer),
        (status = 401, description = "The email or the password is wrong (the same answer for both)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The account is disabled", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Too many failures for this account or address; see Retry-After", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unavailable,
    )
)]
#[post("/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<LoginBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let email =
        Email::parse(&body.email).map_err(|e| Problem::invalid_field("email", e.to_string()))?;
    if body.password.is_empty() || body.password.chars().count() > domain::Password::MAX_CHARS {
        return Err(Problem::invalid_field("password", "must be 1 to 128 characters").into());
    }
    let ip = http::client_ip(&state, &req);
    let keys = throttle_keys(&state, &email, &ip);
    let window = state.throttle_window();
    let lookup = email.as_str().to_string();
    let limits = keys.clone();
    // The throttle and the account in one trip to the database.
    let (wait, user) = db::run(&state.pool, move |conn| {
        let limits: Vec<(&str, u32)> = limits.iter().map(|(k, l)| (k.as_str(), *l)).collect();
        let wait = throttle::blocked_for(conn, &limits, window)?;
        let user = match wait {
            Some(_) => None,
            None => users::find_by_email(conn, &lookup)?,
        };
        Ok::<_, Error>((wait, user))
    })
    .await?;
    if let Some(seconds) = wait {
        return Err(Problem::too_many_requests(seconds).into());
    }
    let stored_hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let matches = state.hasher.verify(&body.password, stored_hash).await?;
    let user = match user {
        Some(user) if matches => user,
        _ => {
            record_failures(&state, &keys).await?;
            return Err(invalid_credentials());
        }
    };
    if !user.is_active() {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "account_disabled",
            "Account disabled",
        )
        .detail("this account has been disabled")
        .into());
    }

    let client = http::client(&state, &req);
    let absolute = state.absolute_timeout();
    let account_key = keys[0].0.clone();
    let user_id = user.user_id();
    let (session, refresh) = db::run(&state.pool, move |conn| {
        // Success clears the account's count, never the address's.
        throttle::clear(conn, &account_key)?;
        sessions::open(conn, user_id, absolute, &client).map_err(Error::from)
    })
    .await?;
    http::tokens(&state, StatusCode::OK, &user, &session, &refresh)
}
