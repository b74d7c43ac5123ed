//! What several auth routes share: the token answer and refresh cookie,
//! the client's address, the cross-site check, the live-session check.
//! Routes import this, never one another.

use crate::domain::secret::Secret;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::sessions::{self, Client, SessionRow};
use crate::store::users::{PublicUser, UserRow};
use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use authn::Caller;
use platform::db;
use platform::Problem;
use serde::Serialize;

pub const REFRESH_COOKIE: &str = "refresh_token";

/// An access token, and the user it is for; the refresh token travels in
/// the `refresh_token` cookie.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenAnswer {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub user: PublicUser,
}

fn refresh_cookie(state: &AppState, value: String, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build(REFRESH_COOKIE, value)
        .http_only(true)
        .secure(state.config.cookie_secure)
        .same_site(SameSite::Strict)
        .path(crate::routes::PREFIX)
        .max_age(time::Duration::seconds(max_age_secs))
        .finish()
}

/// 200/201 with a new access token for `session` and the refresh cookie.
pub fn tokens(
    state: &AppState,
    status: actix_web::http::StatusCode,
    user: &UserRow,
    session: &SessionRow,
    refresh: &Secret,
) -> Result<HttpResponse> {
    let ttl = state.config.access_token_ttl_secs;
    let access_token = crate::domain::keys::issue_access_token(
        &state.keyring()?,
        &state.config.jwt_issuer,
        user.user_id(),
        session.session_id(),
        &user.roles(),
        ttl,
    )?;
    let cookie_age = (session.expires_at - chrono::Utc::now())
        .num_seconds()
        .max(0);
    Ok(HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .cookie(refresh_cookie(
            state,
            refresh.expose().to_string(),
            cookie_age,
        ))
        .json(TokenAnswer {
            access_token,
            token_type: "Bearer",
            expires_in: ttl,
            user: user.to_public(),
        }))
}

/// A cookie that removes the refresh token from the browser.
pub fn cleared_cookie(state: &AppState) -> Cookie<'static> {
    refresh_cookie(state, String::new(), 0)
}

pub fn presented_refresh(req: &HttpRequest) -> Option<Secret> {
    req.cookie(REFRESH_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
        .map(|v| Secret::from_client(&v))
}

pub fn client(state: &AppState, req: &HttpRequest) -> Client {
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(512).collect());
    Client {
        user_agent,
        ip: Some(client_ip(state, req)),
    }
}

/// The caller's address (`TRUSTED_PROXIES` decides whose
/// `X-Forwarded-For` counts).
pub fn client_ip(state: &AppState, req: &HttpRequest) -> String {
    platform::http::respond::client_ip(req, &state.config.trusted_proxies)
}

/// Refuses a cross-site request to a cookie-authenticated route: an `Origin`
/// that is neither this host nor an allowed origin, or
/// `Sec-Fetch-Site: cross-site`.
pub fn refuse_cross_site(state: &AppState, req: &HttpRequest) -> Result<()> {
    let cross_site = || {
        Error::from(Problem::forbidden(
            "cross-site requests are not allowed here",
        ))
    };
    if req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return Err(cross_site());
    }
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| cross_site())?
        .trim_end_matches('/');
    if state
        .config
        .allowed_origin_list()
        .iter()
        .any(|o| o == origin)
    {
        return Ok(());
    }
    let origin_host = origin.split_once("://").map(|(_, host)| host);
    let host = req.connection_info().host().to_string();
    if origin_host == Some(host.as_str()) {
        Ok(())
    } else {
        Err(cross_site())
    }
}

/// The caller's session, which must still be live (an access token outlives
/// a logout by up to its lifetime; auth's own routes do not honour it).
pub async fn live_session(state: &AppState, caller: &Caller) -> Result<SessionRow> {
    let session_id = caller.session_id;
    let session = db::read(&state.pool, move |conn| sessions::find(conn, session_id)).await?;
    match session {
        Some(session)
            if session.user_id == caller.user_id.as_uuid()
                && session.is_live(chrono::Utc::now(), state.idle_timeout()) =>
        {
            Ok(session)
        }
        _ => Err(Problem::invalid_token("the session has ended").into()),
    }
}
