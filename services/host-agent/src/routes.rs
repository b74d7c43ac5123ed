//! What clients call on the agent, at the root of its address (a client
//! is handed `http://<address>` and posts to `/connect`), beside the
//! platform's `/healthz`, `/readyz`, `/metrics` and `/docs`.
//!
//! How the scheduler's answers to the connect report become the client's:
//!
//! | scheduler | client | why |
//! |---|---|---|
//! | 200 | 200 `{session_id}` | the session is connected |
//! | 409 `already_used` | 409 `already_used` | a connection token works once |
//! | 409 other (`instance_not_serving`) | 409, same code | this instance no longer takes clients; allocate again |
//! | 410 | 401 `reservation_over` | the token is signed but admits nobody any more (expired or ended), like an expired one |
//! | 404 | 401 `invalid_connection_token` | the token names no session of this instance, like a foreign one |
//! | 401 (our credential) | 503 | the agent's problem, not the client's; logged |
//! | no answer, 5xx | 503 with `Retry-After` | the session is still allocated: trying again may work |

use crate::state::{AgentState, Serving};
use crate::tokens::TokenRefusal;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{delete, post, web, HttpRequest, HttpResponse};
use authn::bearer_token;
use platform::http::extract::Json;
use platform::http::openapi::BodyProblems;
use platform::http::problem::ProblemBody;
use platform::Problem;
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

/// The agent's routes are at the root.
pub const PREFIX: &str = "";

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(connect)
        .service(leave)
        // The platform mounts `/metrics` beside the service's scope; with
        // the scope at the root, the scope would answer `/metrics` with its
        // 404, so the same handler is mounted inside it too.
        .service(platform::http::metrics::metrics);
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    /// The token the scheduler handed out with the session.
    connection_token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectAnswer {
    session_id: Uuid,
}

/// Why a client was not let in; each is one outcome of the connects
/// metric and one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotRegistered,
    Terminating,
    Token(TokenRefusal),
    AlreadyUsed,
    ReservationOver,
    NotThisInstance,
    InstanceNotServing { code: String, detail: String },
    SchedulerUnavailable,
}

impl Refusal {
    pub fn outcome(&self) -> &'static str {
        match self {
            Refusal::NotRegistered => "not_registered",
            Refusal::Terminating => "terminating",
            Refusal::Token(_) => "invalid_token",
            Refusal::AlreadyUsed => "already_used",
            Refusal::ReservationOver => "reservation_over",
            Refusal::NotThisInstance => "not_this_instance",
            Refusal::InstanceNotServing { .. } => "instance_not_serving",
            Refusal::SchedulerUnavailable => "scheduler_unavailable",
        }
    }

    pub fn problem(&self) -> Problem {
        match self {
            Refusal::NotRegistered => unavailable(
                "not_registered",
                "the instance is not registered with the scheduler yet",
            ),
            Refusal::Terminating => unavailable("terminating", "the instance is shutting down"),
            Refusal::Token(refusal) => invalid_connection_token(refusal.to_string()),
            Refusal::AlreadyUsed => Problem::conflict(
                "already_used",
                "the session connected already; a connection token works once",
            ),
            Refusal::ReservationOver => Problem::new(
                StatusCode::UNAUTHORIZED,
                "reservation_over",
                "Invalid connection token",
            )
            .detail("the reservation expired or the session ended"),
            Refusal::NotThisInstance => {
                invalid_connection_token("no session of this instance has that id")
            }
            Refusal::InstanceNotServing { code, detail } => {
                let code = if code.is_empty() {
                    "conflict"
                } else {
                    code.as_str()
                };
                Problem::conflict(code, detail.clone())
            }
            Refusal::SchedulerUnavailable => unavailable(
                "unavailable",
                "the scheduler cannot be reached to confirm the session",
            ),
        }
    }
}

/// 503 with `Retry-After`, as every service answers it.
fn unavailable(code: &str, detail: &str) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, code, "Service unavailable")
        .detail(detail)
        .header(header::RETRY_AFTER, HeaderValue::from_static("1"))
}

fn invalid_connection_token(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid_connection_token",
        "Invalid connection token",
    )
    .detail(detail)
}

/// Whether new clients are taken now.
fn open(state: &AgentState) -> Result<(), Refusal> {
    match state.serving() {
        Serving::Open => Ok(()),
        Serving::Registering => Err(Refusal::NotRegistered),
        // The scheduler gives a draining instance no new sessions; a token
        // presented now is for one allocated before the drain, and the
        // scheduler still decides whether it may connect.
        Serving::Draining => Ok(()),
        Serving::Terminating => Err(Refusal::Terminating),
    }
}

/// The scheduler's answer to a connect report, as the client's.
fn report_refusal(err: &crate::scheduler::CallError) -> Refusal {
    use crate::scheduler::CallError;
    match err {
        CallError::Unavailable(_) => Refusal::SchedulerUnavailable,
        CallError::Refused {
            status: 409, code, ..
        } if code == "already_used" => Refusal::AlreadyUsed,
        CallError::Refused {
            status: 409,
            code,
            detail,
        } => Refusal::InstanceNotServing {
            code: code.clone(),
            detail: detail.clone(),
        },
        CallError::Refused { status: 410, .. } => Refusal::ReservationOver,
        CallError::Refused { status: 404, .. } => Refusal::NotThisInstance,
        // 401 (the credential), 422, anything else: the agent's problem.
        CallError::Refused { .. } => {
            tracing::error!(error = %err, "the scheduler refused a connect report");
            Refusal::SchedulerUnavailable
        }
    }
}

/// Verifies the token here, then has the scheduler mark the session
/// connected; only once that succeeded is the client in.
async fn admit(state: &AgentState, token: &str) -> Result<Uuid, Refusal> {
    open(state)?;
    let instance = state.registered().ok_or(Refusal::NotRegistered)?;
    let admission = state
        .tokens()
        .admit(token, instance.id)
        .await
        .map_err(Refusal::Token)?;
    let session = admission.session_id;
    if state.is_connected(session) {
        return Err(Refusal::AlreadyUsed);
    }
    match state.scheduler().connected(instance, session).await {
        Ok(_) => {
            state.settle_doubt(session);
            state.add_session(session);
            tracing::info!(session = %session, user = %admission.user_id, "client connected");
            Ok(session)
        }
        // An earlier report of this client's got no answer but went
        // through: the retry is the same client.
        Err(err) if report_refusal(&err) == Refusal::AlreadyUsed && state.settle_doubt(session) => {
            state.add_session(session);
            tracing::info!(session = %session, user = %admission.user_id, "client connected (report retried)");
            Ok(session)
        }
        Err(err) => {
            if !err.is_refusal() {
                tracing::warn!(session = %session, error = %err, "cannot report a connection");
                state.report_in_doubt(session);
            }
            Err(report_refusal(&err))
        }
    }
}

/// Connect with the connection token of an allocated session (request B).
/// The token is checked here (EdDSA from the scheduler's JWKS, `typ`
/// `connection+jwt`, `aud` this instance, not expired); the scheduler then
/// marks the session connected, once.
#[utoipa::path(
    tag = "clients",
    request_body = ConnectBody,
    responses(
        (status = 200, description = "Connected: the session is this client's", body = ConnectAnswer),
        (status = 401, description = "The token is invalid, for another instance, expired, or its reservation is over (`reservation_over`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The session connected already (`already_used`), or the instance no longer takes clients", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Not registered yet, shutting down, or the scheduler is unreachable; `Retry-After` says when to try again", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems,
    )
)]
#[post("/connect")]
pub async fn connect(
    state: web::Data<AgentState>,
    body: Json<ConnectBody>,
) -> Result<HttpResponse, Problem> {
    let outcome = admit(&state, &body.into_inner().connection_token).await;
    let label = match &outcome {
        Ok(_) => "admitted",
        Err(refusal) => refusal.outcome(),
    };
    state.metrics().connects.with_label_values(&[label]).inc();
    match outcome {
        Ok(session_id) => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(ConnectAnswer { session_id })),
        Err(refusal) => Err(refusal.problem()),
    }
}

/// Leave: the session is dropped from the next heartbeat, and the
/// scheduler then ends it. `Authorization: Bearer <connection token>` of
/// that session; the token may have expired (its `exp` is the end of the
/// reservation, not of the session). Idempotent.
#[utoipa::path(
    tag = "clients",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The session")),
    responses(
        (status = 204, description = "The session is no longer connected here"),
        (status = 401, description = "No connection token, or one that is not valid for this instance", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The token is another session's", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The id is not a session id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Not registered yet; `Retry-After` says when to try again", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
#[delete("/sessions/{id}")]
pub async fn leave(
    req: HttpRequest,
    state: web::Data<AgentState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    let session = path.into_inner();
    let token = bearer_token(&req).ok_or_else(|| {
        invalid_connection_token("send the session's connection token as a bearer token")
            .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    })?;
    let instance = state
        .registered()
        .ok_or_else(|| Refusal::NotRegistered.problem())?;
    let holder = state
        .tokens()
        .identify(&token, instance.id)
        .await
        .map_err(|refusal| {
            invalid_connection_token(refusal.to_string()).header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            )
        })?;
    if holder.session_id != session {
        return Err(Problem::forbidden(
            "the connection token is another session's",
        ));
    }
    if state.remove_session(session) {
        tracing::info!(session = %session, "client left");
    }
    Ok(platform::http::respond::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::CallError;

    fn refused(status: u16, code: &str) -> CallError {
        CallError::Refused {
            status,
            code: code.to_string(),
            detail: String::new(),
        }
    }

    #[test]
    fn the_schedulers_answers_become_the_clients() {
        let status = |err: CallError| report_refusal(&err).problem().status;
        assert_eq!(status(refused(409, "already_used")), 409);
        assert_eq!(status(refused(409, "instance_not_serving")), 409);
        assert_eq!(status(refused(410, "reservation_over")), 401);
        assert_eq!(status(refused(404, "not_found")), 401);
        assert_eq!(status(refused(401, "unauthorized")), 503);
        assert_eq!(status(CallError::Unavailable("down".into())), 503);
        assert_eq!(
            report_refusal(&refused(409, "already_used")).outcome(),
            "already_used"
        );
    }

    #[test]
    fn every_503_says_when_to_try_again() {
        for refusal in [
            Refusal::NotRegistered,
            Refusal::Terminating,
            Refusal::SchedulerUnavailable,
        ] {
            let response = refusal.problem().to_response();
            assert_eq!(response.status(), 503);
            assert_eq!(
                response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()),
                Some("1")
            );
        }
    }
}
