//! Admin views of the fleet, and drain.

use crate::error::Result;
use crate::model::{Instance, InstanceStatus, Region};
use crate::state::AppState;
use crate::store::instances::{self, RegionLoad};
use actix_web::{get, post, web, HttpResponse};
use authn::Caller;
use domain::Role;
use platform::db;
use platform::http::extract::Query;
use platform::http::openapi::{Forbidden, Invalid, Unauthorized, Unavailable};
use platform::http::pagination::{Page, PageRequest};
use platform::http::problem::ProblemBody;
use platform::Problem;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    region: Option<String>,
    status: Option<InstanceStatus>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Instances in id order, of every status unless one is asked for
/// (admins).
#[utoipa::path(
    tag = "fleet",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of instances", body = Page<Instance>),
        Invalid, Unauthorized, Forbidden, Unavailable,
    )
)]
#[get("/instances")]
pub async fn list_instances(
    state: web::Data<AppState>,
    caller: Caller,
    query: Query<ListQuery>,
) -> Result<HttpResponse> {
    caller.require(Role::Admin)?;
    let query = query.0;
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let region = query
        .region
        .filter(|raw| !raw.is_empty())
        .map(|raw| {
            Region::parse(&raw).map_err(|err| Problem::invalid_field("region", err.to_string()))
        })
        .transpose()?;
    let status = query.status;
    let rows = db::read(&state.pool, move |conn| {
        instances::list(
            conn,
            region.as_ref(),
            status,
            page.cursor,
            page.rows_to_read(),
        )
    })
    .await?;
    Ok(Page::from_rows(&page, rows, |row| row.id).respond())
}

/// Drain an instance (admins): it takes no new sessions, and is
/// terminated once its last one ends (or at the drain deadline).
#[utoipa::path(
    tag = "fleet",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "The instance, draining", body = Instance),
        (status = 404, description = "No such instance", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The instance is not active (`not_active`)", body = ProblemBody, content_type = "application/problem+json"),
        Unauthorized, Forbidden, Unavailable,
    )
)]
#[post("/instances/{id}/drain")]
pub async fn drain_instance(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse> {
    caller.require(Role::Admin)?;
    let id = path.into_inner();
    let instance = db::run(&state.pool, move |conn| {
        instances::drain(conn, id).map_err(crate::error::Error::from)
    })
    .await?
    .ok_or_else(|| Problem::not_found("no such instance"))?;
    if instance.status != InstanceStatus::Draining {
        return Err(Problem::conflict(
            "not_active",
            format!(
                "the instance is {}; only an active one drains",
                instance.status
            ),
        )
        .into());
    }
    Ok(HttpResponse::Ok().json(instance))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Fleet {
    regions: Vec<RegionLoad>,
}

/// Per region: active instances, their capacity and use, and launches
/// pending (admins).
#[utoipa::path(
    tag = "fleet",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The fleet by region", body = Fleet),
        Unauthorized, Forbidden, Unavailable,
    )
)]
#[get("/fleet")]
pub async fn fleet(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    caller.require(Role::Admin)?;
    let stale = i64::try_from(state.policy.heartbeat_stale.as_secs()).unwrap_or(i64::MAX);
    let regions = db::read(&state.pool, move |conn| instances::fleet(conn, stale)).await?;
    Ok(HttpResponse::Ok().json(Fleet { regions }))
}
