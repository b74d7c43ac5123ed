use crate::allocation::{self, Allocation, Outcome, Request};
use crate::error::Result;
use crate::model::{App, Region, Session, SessionStatus};
use crate::state::AppState;
use crate::store::sessions;
use crate::tokens;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use authn::Caller;
use chrono::{DateTime, Utc};
use domain::Role;
use platform::db;
use platform::http::extract::{idempotency_key, OptionalJson};
use platform::http::openapi::{BodyProblems, Unauthorized, Unavailable};
use platform::http::problem::ProblemBody;
use platform::http::respond::no_content;
use platform::Problem;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use uuid::Uuid;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateBody {
    /// The region wanted; any region when absent. A full region falls
    /// back to the regions configured after it.
    region: Option<String>,
    /// What the client will run there.
    app: Option<String>,
}

/// Where a session runs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InstanceRef {
    id: Uuid,
    region: String,
    /// `host:port` of the instance's host agent (request B goes there).
    address: String,
}

/// An allocated slot, and the token that connects to it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Allocated {
    session_id: Uuid,
    instance: InstanceRef,
    /// A JWT for this instance only; present it to the agent's `POST /connect`.
    connection_token: String,
    /// The reservation ends then unless the client connected.
    expires_at: DateTime<Utc>,
}

fn parse_body(
    body: Option<AllocateBody>,
) -> std::result::Result<(Option<Region>, Option<App>), Problem> {
    let Some(body) = body else {
        return Ok((None, None));
    };
    let region = body
        .region
        .map(|raw| {
            Region::parse(&raw).map_err(|err| Problem::invalid_field("region", err.to_string()))
        })
        .transpose()?;
    let app = body
        .app
        .map(|raw| App::parse(&raw).map_err(|err| Problem::invalid_field("app", err.to_string())))
        .transpose()?;
    Ok((region, app))
}

fn no_slot(reason: &str, retry_after_secs: u64) -> Problem {
    let detail = match reason {
        "stale" => "the instances with free slots have not reported in time; try again shortly",
        "region_full" => {
            "every instance of the region (and its fallbacks) is full; more are on the way"
        }
        _ => "no instance is available in the region; more are on the way",
    };
    let mut problem = Problem::unavailable(detail);
    if let Ok(value) = HeaderValue::from_str(&retry_after_secs.max(1).to_string()) {
        problem = problem.header(header::RETRY_AFTER, value);
    }
    problem
}

/// Allocate a slot on an instance. It goes to an active instance with a
/// recent heartbeat and a free slot, in the region asked for or its
/// fallbacks. With an `Idempotency-Key`, a retry gets the same allocation.
#[utoipa::path(
    tag = "sessions",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the same allocation")),
    request_body(content = Option<AllocateBody>),
    responses(
        (status = 201, description = "The slot, the instance and the connection token", body = Allocated),
        (status = 409, description = "The user holds as many live sessions as allowed (`session_limit`), or the session of this Idempotency-Key is over (`idempotency_key_used`)", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unauthorized, Unavailable,
    )
)]
#[post("/sessions")]
pub async fn allocate(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: OptionalJson<AllocateBody>,
) -> Result<HttpResponse> {
    let (region, app) = parse_body(body.0)?;
    let request = Request {
        user: caller.user_id.0,
        region,
        app,
        idempotency_key: idempotency_key(&req)?,
    };
    let started = Instant::now();
    let policy = state.policy.clone();
    let outcome = db::run(&state.pool, move |conn| {
        allocation::allocate(conn, &policy, &request).map_err(crate::error::Error::from)
    })
    .await;
    state
        .metrics
        .allocation_seconds
        .observe(started.elapsed().as_secs_f64());
    let outcome = outcome?;
    let (label, reason) = outcome.labels();
    state
        .metrics
        .allocations
        .with_label_values(&[label, reason])
        .inc();
    match outcome {
        Outcome::Existing(allocation) if !allocation.live => Err(Problem::conflict(
            "idempotency_key_used",
            format!(
                "the session {} of this Idempotency-Key is over; allocate with a new key",
                allocation.session_id
            ),
        )
        .into()),
        Outcome::Allocated(allocation, _) | Outcome::Existing(allocation) => {
            allocated(&state, caller.user_id.0, allocation)
        }
        Outcome::Refused(reason) if reason == "user_limit" => Err(Problem::conflict(
            "session_limit",
            format!(
                "you hold {} live session(s), the most allowed; end one first",
                state.policy.max_sessions_per_user
            ),
        )
        .into()),
        Outcome::Refused(reason) => {
            Err(no_slot(&reason, state.policy.reconcile_interval.as_secs()).into())
        }
    }
}

fn allocated(state: &AppState, user: Uuid, allocation: Allocation) -> Result<HttpResponse> {
    let token = tokens::connection_token(
        &state.keyring()?,
        allocation.instance_id,
        allocation.session_id,
        user,
        allocation.token_id,
        allocation.expires_at,
    )?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Allocated {
            session_id: allocation.session_id,
            instance: InstanceRef {
                id: allocation.instance_id,
                region: allocation.region,
                address: allocation.address,
            },
            connection_token: token,
            expires_at: allocation.expires_at,
        }))
}

fn not_found() -> Problem {
    Problem::not_found("no such session")
}

/// The caller's session (or, for an admin, anyone's); anyone else's is 404.
async fn own_session(state: &AppState, caller: &Caller, id: Uuid) -> Result<Session> {
    let session = db::read(&state.pool, move |conn| sessions::find(conn, id))
        .await?
        .ok_or_else(not_found)?;
    if session.user_id != caller.user_id.0 && !caller.has_role(Role::Admin) {
        return Err(not_found().into());
    }
    Ok(session)
}

/// A session (its owner, or an admin).
#[utoipa::path(
    tag = "sessions",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session", body = Session),
        (status = 404, description = "No such session, or not yours", body = ProblemBody, content_type = "application/problem+json"),
        Unauthorized, Unavailable,
    )
)]
#[get("/sessions/{id}")]
pub async fn show_session(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse> {
    let session = own_session(&state, &caller, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(session))
}

/// End a session (its owner, or an admin): its slot is free at once.
/// Ending one that has ended changes nothing.
#[utoipa::path(
    tag = "sessions",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The session's id")),
    responses(
        (status = 204, description = "The session has ended"),
        (status = 404, description = "No such session, or not yours", body = ProblemBody, content_type = "application/problem+json"),
        Unauthorized, Unavailable,
    )
)]
#[delete("/sessions/{id}")]
pub async fn end_session(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse> {
    let session = own_session(&state, &caller, path.into_inner()).await?;
    if session.status.is_live() {
        let id = session.id;
        db::run(&state.pool, move |conn| {
            sessions::end(conn, id, SessionStatus::Ended, "ended_by_client")
                .map_err(crate::error::Error::from)
        })
        .await?;
    }
    Ok(no_content())
}
