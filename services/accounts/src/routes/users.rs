use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::profiles::{self, Filter, SearchTerm};
use actix_web::{web, HttpResponse};
use authn::Caller;
use diesel::Connection;
use domain::messages::{AccountDisabled, AccountEnabled, AccountRolesChanged};
use domain::{AccountStatus, Role, UserId};
use platform::db;
use platform::http::extract::{Json, Query};
use platform::http::pagination::{Page, PageRequest};
use platform::Problem;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    q: Option<String>,
    role: Option<Role>,
    status: Option<AccountStatus>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /users`: admins search the directory.
pub async fn list(
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

/// `GET /users/{id}`: admins and staff read a profile.
pub async fn show(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesBody {
    roles: Vec<Role>,
}

/// `PUT /users/{id}/roles`: admins set a user's roles; `account.roles_changed`.
/// An admin cannot take the admin role from themselves, so the platform
/// always keeps an admin.
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

/// `POST /users/{id}/disable`: every session of the user ends (auth acts on
/// `account.disabled`). Admins cannot disable themselves.
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

/// `POST /users/{id}/enable`.
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
