use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::profiles::{self, Profile, ProfileChanges, ProfileRow};
use actix_web::{get, patch, web, HttpResponse};
use authn::Caller;
use diesel::Connection;
use domain::messages::AccountProfileUpdated;
use domain::{DisplayName, UserId};
use platform::db;
use platform::http::extract::Json;
use platform::http::openapi::{BodyProblems, Unauthorized, Unavailable};
use platform::http::problem::ProblemBody;
use platform::{FieldError, Problem};
use serde::{Deserialize, Deserializer};

fn profile_missing() -> Error {
    Problem::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "profile_not_found",
        "Profile not found",
    )
    .detail("no profile for this user yet; it appears moments after registration")
    .into()
}

async fn load(state: &AppState, user_id: UserId) -> Result<ProfileRow> {
    state.profile(user_id).await?.ok_or_else(profile_missing)
}

/// The caller's profile.
#[utoipa::path(
    tag = "profile",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's profile", body = Profile),
        (status = 404, description = "No profile yet: it appears moments after registration", body = ProblemBody, content_type = "application/problem+json"),
        Unauthorized, Unavailable,
    )
)]
#[get("/me")]
pub async fn show_me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    current(&state, caller.user_id).await
}

async fn current(state: &AppState, user_id: UserId) -> Result<HttpResponse> {
    let profile = load(state, user_id).await?;
    Ok(HttpResponse::Ok().json(profile.to_profile()))
}

/// Tells an absent field (leave as is) from an explicit `null` (clear it).
fn present<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Fields to change; an absent field stays as it is, `null` clears it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    /// 1 to 64 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    display_name: Option<String>,
    /// An http(s) URL, at most 2048 characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    avatar_url: Option<Option<String>>,
    /// A BCP 47 tag such as `pt-BR`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    locale: Option<Option<String>>,
    /// An IANA zone such as `Europe/Paris`, or `UTC`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    timezone: Option<Option<String>>,
}

fn check_avatar_url(url: &str) -> std::result::Result<(), &'static str> {
    let ok_scheme = url.starts_with("https://") || url.starts_with("http://");
    let host_part = url.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    if !ok_scheme || host_part.is_empty() || host_part.starts_with('/') {
        return Err("must be an http(s) URL");
    }
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be at most 2048 characters without spaces");
    }
    Ok(())
}

/// A BCP 47 tag such as `en`, `pt-BR` or `zh-Hant-TW`.
fn check_locale(locale: &str) -> std::result::Result<(), &'static str> {
    let mut parts = locale.split('-');
    let language_ok = parts
        .next()
        .is_some_and(|l| (2..=3).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphabetic()));
    let rest_ok =
        parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if language_ok && rest_ok && locale.len() <= 35 {
        Ok(())
    } else {
        Err("must be a BCP 47 language tag such as en or pt-BR")
    }
}

/// An IANA time zone name such as `Europe/Paris`, or `UTC`.
fn check_timezone(zone: &str) -> std::result::Result<(), &'static str> {
    let well_formed = zone.len() <= 64
        && zone.split('/').all(|part| {
            !part.is_empty()
                && part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+-".contains(c))
        });
    if zone == "UTC" || (well_formed && zone.contains('/')) {
        Ok(())
    } else {
        Err("must be an IANA time zone such as Europe/Paris or UTC")
    }
}

fn parse(body: UpdateBody) -> std::result::Result<ProfileChanges, Problem> {
    let mut errors = Vec::new();
    let display_name = match body.display_name.as_deref().map(DisplayName::parse) {
        Some(Ok(name)) => Some(name.as_str().to_string()),
        Some(Err(err)) => {
            errors.push(FieldError::new("display_name", err.to_string()));
            None
        }
        None => None,
    };
    let mut optional =
        |field: &str,
         value: Option<Option<String>>,
         check: fn(&str) -> std::result::Result<(), &'static str>| {
            match value {
                Some(Some(v)) => match check(&v) {
                    Ok(()) => Some(Some(v)),
                    Err(message) => {
                        errors.push(FieldError::new(field, message));
                        None
                    }
                },
                other => other,
            }
        };
    let avatar_url = optional("avatar_url", body.avatar_url, check_avatar_url);
    let locale = optional("locale", body.locale, check_locale);
    let timezone = optional("timezone", body.timezone, check_timezone);
    if errors.is_empty() {
        Ok(ProfileChanges {
            display_name,
            avatar_url,
            locale,
            timezone,
        })
    } else {
        Err(Problem::validation(errors))
    }
}

/// The caller's own display name, avatar, locale and time zone;
/// `account.profile_updated` leaves through the outbox.
#[utoipa::path(
    tag = "profile",
    security(("bearer" = [])),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The updated profile", body = Profile),
        (status = 404, description = "No profile yet", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unauthorized, Unavailable,
    )
)]
#[patch("/me")]
pub async fn update_me(
    state: web::Data<AppState>,
    caller: Caller,
    body: Json<UpdateBody>,
) -> Result<HttpResponse> {
    let changes = parse(body.into_inner())?;
    let user_id = caller.user_id;
    if changes.is_empty() {
        return current(&state, user_id).await;
    }
    let profile = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            if profiles::find_for_update(conn, user_id)?.is_none() {
                return Ok(None);
            }
            let profile = profiles::update_profile(conn, user_id, &changes)?;
            bus::outbox::enqueue(
                conn,
                AccountProfileUpdated {
                    user_id: profile.id,
                    display_name: profile.display_name.clone(),
                    avatar_url: profile.avatar_url.clone(),
                    locale: profile.locale.clone(),
                    timezone: profile.timezone.clone(),
                    revision: profile.revision,
                },
            )?;
            Ok::<_, diesel::result::Error>(Some(profile))
        })
        .map_err(Error::from)
    })
    .await?
    .ok_or_else(profile_missing)?;
    state.relay.wake();
    Ok(HttpResponse::Ok().json(profile.to_profile()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_checks() {
        assert!(check_avatar_url("https://cdn.example.com/a.png").is_ok());
        assert!(check_avatar_url("javascript:alert(1)").is_err());
        assert!(check_avatar_url("https:///x").is_err());
        assert!(check_locale("pt-BR").is_ok());
        assert!(check_locale("english").is_err());
        assert!(check_timezone("Europe/Paris").is_ok());
        assert!(check_timezone("America/Argentina/Buenos_Aires").is_ok());
        assert!(check_timezone("UTC").is_ok());
        assert!(check_timezone("Mars").is_err());
        assert!(check_timezone("../etc/passwd").is_err());
    }
}
