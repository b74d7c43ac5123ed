//! What host agents call: registration (with the registration secret),
//! heartbeats and the report that a client connected (with the
//! instance's own credential).

use crate::error::Result;
use crate::model::{Address, Instance, InstanceStatus, Provider, Region};
use crate::state::AppState;
use crate::store::instances::{self, Registered, Registration};
use crate::store::sessions::{self, Connect};
use actix_web::{post, web, HttpRequest, HttpResponse};
use authn::bearer_token;
use platform::db;
use platform::http::extract::{parse_json, Json};
use platform::http::openapi::{BodyProblems, Unavailable};
use platform::http::problem::ProblemBody;
use platform::Problem;
use serde::{Deserialize, Serialize};
use signing::Secret;
use uuid::Uuid;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    region: String,
    /// Sessions the instance holds at once, 1 to 1000.
    #[schema(minimum = 1, maximum = 1000)]
    capacity: i64,
    /// `host:port` where clients reach the agent.
    address: String,
    /// The `provisioning` instance this agent was launched to be.
    instance_id: Option<Uuid>,
    provider: Option<String>,
    provider_ref: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RegisteredBody {
    id: Uuid,
    /// The instance's own secret for its heartbeats; shown once.
    credential: String,
    heartbeat_interval_secs: u64,
}

fn unauthorized(detail: &str) -> Problem {
    Problem::unauthorized(detail)
}

fn parse_registration(raw: RegisterBody) -> std::result::Result<Registration, Problem> {
    let region = Region::parse(&raw.region)
        .map_err(|err| Problem::invalid_field("region", err.to_string()))?;
    let capacity = i32::try_from(raw.capacity)
        .ok()
        .filter(|capacity| (1..=1000).contains(capacity))
        .ok_or_else(|| Problem::invalid_field("capacity", "must be 1 to 1000"))?;
    let address = Address::parse(&raw.address)
        .map_err(|err| Problem::invalid_field("address", err.to_string()))?;
    let provider = raw
        .provider
        .map(|raw| {
            Provider::parse(&raw).map_err(|err| Problem::invalid_field("provider", err.to_string()))
        })
        .transpose()?;
    if raw
        .provider_ref
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.len() > 255)
    {
        return Err(Problem::invalid_field(
            "provider_ref",
            "must be 1 to 255 characters",
        ));
    }
    Ok(Registration {
        region,
        capacity,
        address,
        instance_id: raw.instance_id,
        provider,
        provider_ref: raw.provider_ref,
        credential_hash: Vec::new(),
    })
}

/// Register a host agent. `Authorization: Bearer <REGISTRATION_SECRET>`
/// is checked before the body. With the `instance_id` of a launch, the
/// agent becomes that instance.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    request_body = RegisterBody,
    responses(
        (status = 201, description = "The instance's id and credential", body = RegisteredBody),
        (status = 401, description = "No registration secret, or the wrong one", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No instance has the `instance_id` given", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The instance named is not waiting for its agent", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unavailable,
    )
)]
#[post("/instances/register")]
pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let presented = bearer_token(&req)
        .ok_or_else(|| unauthorized("send the registration secret as a bearer token"))?;
    if Secret::from_client(&presented).hash() != *state.registration_hash {
        return Err(unauthorized("the registration secret is not right").into());
    }
    let mut registration = parse_registration(parse_json(&body)?)?;
    let credential = Secret::generate();
    registration.credential_hash = credential.hash();
    let registered = db::run(&state.pool, move |conn| {
        instances::register(conn, &registration).map_err(crate::error::Error::from)
    })
    .await?;
    match registered {
        Registered::Active {
            instance,
            launched_secs_ago,
        } => {
            if let Some(secs) = launched_secs_ago {
                state.metrics.time_to_ready_seconds.observe(secs);
            }
            tracing::info!(instance = %instance.id, region = %instance.region, "host agent registered");
            Ok(HttpResponse::Created().json(RegisteredBody {
                id: instance.id,
                credential: credential.expose().to_string(),
                heartbeat_interval_secs: state.policy.heartbeat_interval.as_secs(),
            }))
        }
        Registered::NotProvisioning(status) => Err(Problem::conflict(
            "not_provisioning",
            format!("the instance is {status}, not waiting for its agent"),
        )
        .into()),
        Registered::Unknown => Err(Problem::not_found("no instance has that instance_id").into()),
    }
}

/// The instance `id`, if the caller presents its credential.
async fn authenticated(req: &HttpRequest, state: &AppState, id: Uuid) -> Result<Instance> {
    let presented = bearer_token(req)
        .ok_or_else(|| unauthorized("send the instance's credential as a bearer token"))?;
    let hash = Secret::from_client(&presented).hash();
    db::read(&state.pool, move |conn| {
        instances::authenticated(conn, id, &hash)
    })
    .await?
    .ok_or_else(|| unauthorized("not this instance's credential").into())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// The machine's CPU use, 0 to 100.
    cpu_pct: f64,
    /// The machine's memory use, 0 to 100.
    mem_pct: f64,
    /// Sessions connected on the instance now.
    sessions: Vec<Uuid>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HeartbeatAnswer {
    /// Take no new clients; terminate once the last one leaves.
    drain: bool,
    /// Stop now, and exit 0.
    terminate: bool,
    /// Sessions reported that are not connected here any more (ended by
    /// their client, an admin, the drain deadline, or never connected):
    /// the agent lets them go.
    ended: Vec<Uuid>,
}

fn percent(field: &str, value: f64) -> std::result::Result<f32, Problem> {
    if value.is_finite() && (0.0..=100.0).contains(&value) {
        Ok(value as f32)
    } else {
        Err(Problem::invalid_field(field, "must be 0 to 100"))
    }
}

/// A host agent's heartbeat: its load and the sessions connected on it.
/// Connected sessions it no longer reports have ended.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The instance's id")),
    request_body = HeartbeatBody,
    responses(
        (status = 200, description = "Whether to drain or terminate", body = HeartbeatAnswer),
        (status = 401, description = "Not this instance's credential", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unavailable,
    )
)]
#[post("/instances/{id}/heartbeat")]
pub async fn heartbeat(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    authenticated(&req, &state, id).await?;
    let beat: HeartbeatBody = parse_json(&body)?;
    let cpu = percent("cpu_pct", beat.cpu_pct)?;
    let mem = percent("mem_pct", beat.mem_pct)?;
    if beat.sessions.len() > 1000 {
        return Err(Problem::invalid_field("sessions", "at most 1000").into());
    }
    let grace = crate::allocation::secs(state.policy.heartbeat_interval);
    let (status, ended) = db::run(&state.pool, move |conn| {
        // Sessions first, then the instance: the order every statement
        // that frees a slot takes its locks in.
        sessions::end_departed(conn, id, &beat.sessions, grace)?;
        let status = instances::heartbeat(conn, id, cpu, mem)?;
        let ended = sessions::not_connected_here(conn, id, &beat.sessions)?;
        Ok::<_, crate::error::Error>((status, ended))
    })
    .await?;
    let answer = match status {
        Some(InstanceStatus::Active) => HeartbeatAnswer {
            drain: false,
            terminate: false,
            ended,
        },
        Some(InstanceStatus::Draining) => HeartbeatAnswer {
            drain: true,
            terminate: false,
            ended,
        },
        // Unresponsive, terminating, terminated: it has been given up.
        _ => HeartbeatAnswer {
            drain: true,
            terminate: true,
            ended,
        },
    };
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectedBody {}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectedAnswer {
    session_id: Uuid,
    user_id: Uuid,
}

/// The agent reports that the client of `session_id` presented a valid
/// connection token: the session moves from allocated to connected,
/// once. A second report is 409; a reservation that expired, 410.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The instance's id"),
        ("session_id" = Uuid, Path, description = "The session"),
    ),
    responses(
        (status = 200, description = "The session is connected", body = ConnectedAnswer),
        (status = 401, description = "Not this instance's credential", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No session of this instance has that id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The session connected already (`already_used`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 410, description = "The reservation expired or the session ended", body = ProblemBody, content_type = "application/problem+json"),
        Unavailable,
    )
)]
#[post("/instances/{id}/sessions/{session_id}/connected")]
pub async fn session_connected(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    _body: Option<Json<ConnectedBody>>,
) -> Result<HttpResponse> {
    let (id, session_id) = path.into_inner();
    let instance = authenticated(&req, &state, id).await?;
    if instance.status != InstanceStatus::Active && instance.status != InstanceStatus::Draining {
        return Err(Problem::conflict(
            "instance_not_serving",
            format!("the instance is {}", instance.status),
        )
        .into());
    }
    let connected = db::run(&state.pool, move |conn| {
        sessions::connect(conn, id, session_id).map_err(crate::error::Error::from)
    })
    .await?;
    match connected {
        Connect::Connected(session) => Ok(HttpResponse::Ok().json(ConnectedAnswer {
            session_id: session.id,
            user_id: session.user_id,
        })),
        Connect::AlreadyUsed => Err(Problem::conflict(
            "already_used",
            "the session connected already; a connection token works once",
        )
        .into()),
        Connect::Over => Err(Problem::new(
            actix_web::http::StatusCode::GONE,
            "reservation_over",
            "Gone",
        )
        .detail("the reservation expired or the session ended")
        .into()),
        Connect::Unknown => {
            Err(Problem::not_found("no session of this instance has that id").into())
        }
    }
}
