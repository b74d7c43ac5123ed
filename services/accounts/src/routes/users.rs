use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::profiles::{self, Filter, Profile, SearchTerm};
use actix_web::{get, post, put, web, HttpResponse};
use authn::Caller;
use diesel::Connection;
use domain::messages::{AccountDisabled, AccountEnabled, AccountRolesChanged};
use domain::{AccountStatus, Role, UserId};
use platform::db;
use platform::http::extract::{Json, Query};
use platform::http::openapi::{BodyProblems, Forbidden, Invalid, Unauthorized, Unavailable};
use platform::http::pagination::{Page, PageRequest};
use platform::http::problem::ProblemBody;
use platform::Problem;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Matched case-insensitively anywhere in the email or display name;
    /// at most 254 characters.
    q: Option<String>,
    role: Option<Role>,
    status: Option<AccountStatus>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page; absent or empty for the first.
    cursor: Option<String>,
}

/// Search the directory (admins), in id order.
#[utoipa::path(
    tag = "directory",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of profiles", body = Page<Profile>),
        (status = 400, description = "A parameter is not UTF-8", body = ProblemBody, content_type = "application/problem+json"),
        Invalid, Unauthorized, Forbidden, Unavailable,
    )
)]
#[get("/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    caller: Caller,
    query: Query<ListQuery>,
) -> Result<HttpResponse> {
    caller.require(Role::Admin)?;
    let query = query.0;
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let q = match query.q.as_deref() {
        Some(raw) => {
            SearchTerm::parse(raw).map_err(|err| Problem::invalid_field("q", err.to_string()))?
        }
        None => None,
    };
    let filter = Filter {
        q,
        role: query.role,
        status: query.status,
    };
    let turn = state
        .searches
        .acquire()
        .await
        .map_err(|_| Problem::unavailable("the service is shutting down"))?;
    let rows = db::read(&state.pool, move |conn| {
        profiles::search(conn, &filter, page.cursor, page.rows_to_read())
    })
    .await?;
    drop(turn);
    let page = Page::from_rows(&page, rows, |row| row.id).map(|row| row.to_profile());
    Ok(page.respond())
}

/// A profile (admins and staff).
#[utoipa::path(
    tag = "directory",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The profile", body = Profile),
        (status = 404, description = "No such user", body = ProblemBody, content_type = "application/problem+json"),
        Unauthorized, Forbidden, Unavailable,
    )
)]
#[get("/users/{id}")]
pub async fn show_user(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse> {
    caller.require_any(&[Role::Admin, Role::Staff])?;
    let profile = state
        .profile(UserId(path.into_inner()))
        .await?
        .ok_or_else(no_such_user)?;
    Ok(HttpResponse::Ok().json(profile.to_profile()))
}

fn no_such_user() -> Error {
    Problem::not_found("no such user").into()
}

/// The user's roles, all of them (at least one).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesBody {
    #[schema(min_items = 1)]
    roles: Vec<Role>,
}

/// Set a user's roles (admins); `account.roles_changed`.
/// An admin cannot take the admin role from themselves, so the platform
/// always keeps an admin.
#[utoipa::path(
    tag = "directory",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    request_body = RolesBody,
    responses(
        (status = 200, description = "The updated profile", body = Profile),
        (status = 404, description = "No such user", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unauthorized, Forbidden, Unavailable,
    )
)]
#[put("/users/{id}/roles")]
pub async fn set_roles(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: Json<RolesBody>,
) -> Result<HttpResponse> {
    caller.require(Role::Admin)?;
    let target = UserId(path.into_inner());
    let roles = domain::role::parse_roles(body.into_inner().roles.iter().map(Role::as_str));
    if roles.is_empty() {
        return Err(Problem::invalid_field("roles", "must name at least one role").into());
    }
    if target == caller.user_id && !roles.contains(&Role::Admin) {
        return Err(Problem::forbidden("you cannot remove your own admin role").into());
    }
    let profile = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let Some(current) = profiles::find_for_update(conn, target)? else {
                return Ok(None);
            };
            if current.roles() == roles {
                return Ok(Some(current));
            }
            let profile = profiles::set_roles(conn, target, &roles)?;
            bus::outbox::enqueue(
                conn,
                AccountRolesChanged {
                    user_id: profile.id,
                    roles: profile.roles(),
                    revision: profile.revision,
                },
            )?;
            Ok::<_, diesel::result::Error>(Some(profile))
        })
        .map_err(Error::from)
    })
    .await?
    .ok_or_else(no_such_user)?;
    state.relay.wake();
    Ok(HttpResponse::Ok().json(profile.to_profile()))
}

/// Disable an account (admins): every session of the user ends (auth acts
/// on `account.disabled`). Admins cannot disable themselves.
#[utoipa::path(
    tag = "directory",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The profile, disabled", body = Profile),
        (status = 404, description = "No such user", body = ProblemBody, content_type = "application/problem+json"),
        Unauthorized, Forbidden, Unavailable,
    )
)]
#[post("/users/{id}/disable")]
pub async fn disable(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse> {
    caller.require(Role::Admin)?;
    let target = UserId(path.into_inner());
    if target == caller.user_id {
        return Err(Problem::forbidden("you cannot disable your own account").into());
    }
    change_status(&state, target, AccountStatus::Disabled).await
}

/// Enable an account again (admins); `account.enabled`.
#[utoipa::path(
    tag = "directory",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The profile, active", body = Profile),
        (status = 404, description = "No such user", body = ProblemBody, content_type = "application/problem+json"),
        Unauthorized, Forbidden, Unavailable,
    )
)]
#[post("/users/{id}/enable")]
pub async fn enable(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse> {
    caller.require(Role::Admin)?;
    change_status(&state, UserId(path.into_inner()), AccountStatus::Active).await
}

/// Sets the status; a repeated request changes nothing and emits nothing.
async fn change_status(
    state: &AppState,
    target: UserId,
    status: AccountStatus,
) -> Result<HttpResponse> {
    let profile = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let Some(current) = profiles::find_for_update(conn, target)? else {
                return Ok(None);
            };
            if current.status == status {
                return Ok(Some(current));
            }
            let profile = profiles::set_status(conn, target, status)?;
            let (user_id, revision) = (profile.id, profile.revision);
            match status {
                AccountStatus::Disabled => {
                    bus::outbox::enqueue(conn, AccountDisabled { user_id, revision })?
                }
                AccountStatus::Active => {
                    bus::outbox::enqueue(conn, AccountEnabled { user_id, revision })?
                }
            };
            Ok::<_, diesel::result::Error>(Some(profile))
        })
        .map_err(Error::from)
    })
    .await?
    .ok_or_else(no_such_user)?;
    state.relay.wake();
    Ok(HttpResponse::Ok().json(profile.to_profile()))
}
