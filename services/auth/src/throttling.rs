//! Login throttling as the routes use it (`POST /login`, `POST /password`):
//! failures counted per account and per client address in PostgreSQL, so
//! every replica sees the same counts.

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::throttle;
use domain::Email;
use platform::db;
use platform::Problem;

/// The throttle keys of a login attempt, with their limits.
pub fn throttle_keys(state: &AppState, email: &Email, ip: &str) -> [(String, u32); 2] {
    [
        (
            format!("acct:{}", email.as_str()),
            state.config.login_max_failures,
        ),
        (format!("ip:{ip}"), state.config.login_ip_max_failures),
    ]
}

/// 429 if any of `keys` has used up its failures in the current window.
pub async fn ensure_not_throttled(state: &AppState, keys: &[(String, u32)]) -> Result<()> {
    let keys = keys.to_vec();
    let window = state.throttle_window();
    let wait = db::run(&state.pool, move |conn| {
        let limits: Vec<(&str, u32)> = keys.iter().map(|(k, l)| (k.as_str(), *l)).collect();
        throttle::blocked_for(conn, &limits, window).map_err(Error::from)
    })
    .await?;
    match wait {
        Some(seconds) => Err(Problem::too_many_requests(seconds).into()),
        None => Ok(()),
    }
}

pub async fn record_failures(state: &AppState, keys: &[(String, u32)]) -> Result<()> {
    let keys = keys.to_vec();
    let window = state.throttle_window();
    db::run(&state.pool, move |conn| {
        for (key, _) in &keys {
            throttle::record_failure(conn, key, window)?;
        }
        Ok::<_, Error>(())
    })
    .await
}
