use crate::assignment;
use crate::conversation::{self, Party};
use crate::error::Result;
use crate::model::{Priority, Room, RoomStatus, Subject};
use crate::state::AppState;
use crate::store::rooms::{self, ListFilter};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use authn::Caller;
use domain::Email;
use platform::db;
use platform::http::extract::{idempotency_key, Json, OptionalJson, Query};
use platform::http::openapi::{BodyProblems, Forbidden, Invalid, Unauthorized, Unavailable};
use platform::http::pagination::{Page, PageRequest};
use platform::http::problem::ProblemBody;
use platform::Problem;
use serde::Deserialize;
use uuid::Uuid;

pub fn party(caller: &Caller) -> Party {
    Party::of(caller.user_id.0, &caller.roles)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    subject: Option<String>,
}

/// Open a room (visitors). It is assigned at once to a free staff member
/// who is online, or waits in the queue. With an `Idempotency-Key`, a
/// retry returns the room the first try opened.
#[utoipa::path(
    tag = "rooms",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the same room")),
    request_body(content = Option<OpenBody>),
    responses(
        (status = 201, description = "The room, active or waiting", body = Room),
        BodyProblems, Unauthorized, Forbidden, Unavailable,
    )
)]
#[post("/rooms")]
pub async fn open_room(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: OptionalJson<OpenBody>,
) -> Result<HttpResponse> {
    let Party::Visitor(visitor) = party(&caller) else {
        return Err(Problem::forbidden("only visitors open rooms").into());
    };
    let key = idempotency_key(&req)?;
    let subject = match body.0.and_then(|body| body.subject) {
        Some(raw) => Some(
            Subject::parse(&raw)
                .map_err(|err| Problem::invalid_field("subject", err.to_string()))?
                .into_inner(),
        ),
        None => None,
    };
    let (room, _, changes) = db::run(&state.pool, move |conn| {
        assignment::open(conn, visitor, subject.as_deref(), key.as_deref())
            .map_err(crate::error::Error::from)
    })
    .await?;
    state.settle(changes).await;
    Ok(HttpResponse::Created().json(room))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    status: Option<RoomStatus>,
    /// `me` (the caller's rooms) or a staff member's id; staff only.
    assignee: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Rooms in the order they were opened: a visitor's own, or (staff) all.
#[utoipa::path(
    tag = "rooms",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of rooms", body = Page<Room>),
        (status = 400, description = "A parameter is not UTF-8", body = ProblemBody, content_type = "application/problem+json"),
        Invalid, Unauthorized, Forbidden, Unavailable,
    )
)]
#[get("/rooms")]
pub async fn list_rooms(
    state: web::Data<AppState>,
    caller: Caller,
    query: Query<ListQuery>,
) -> Result<HttpResponse> {
    let party = party(&caller);
    party.require_rooms()?;
    let query = query.0;
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let assignee = match query.assignee.as_deref() {
        None | Some("") => None,
        Some("me") => Some(caller.user_id.0),
        Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| {
            Problem::invalid_field("assignee", "must be `me` or a staff member's id")
        })?),
    };
    let filter = match party {
        Party::Visitor(id) => {
            if assignee.is_some() {
                return Err(Problem::invalid_field(
                    "assignee",
                    "is for staff; a visitor lists their own rooms",
                )
                .into());
            }
            ListFilter {
                visitor: Some(id),
                assignee: None,
                status: query.status,
            }
        }
        _ => ListFilter {
            visitor: None,
            assignee,
            status: query.status,
        },
    };
    let rows = db::read(&state.pool, move |conn| {
        rooms::list(conn, filter, page.cursor, page.rows_to_read())
    })
    .await?;
    Ok(Page::from_rows(&page, rows, |row| row.id).respond())
}

/// A room (its visitor, or staff).
#[utoipa::path(
    tag = "rooms",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The room's id")),
    responses(
        (status = 200, description = "The room", body = Room),
        (status = 404, description = "No such room, or not yours", body = ProblemBody, content_type = "application/problem+json"),
        Unauthorized, Forbidden, Unavailable,
    )
)]
#[get("/rooms/{id}")]
pub async fn show_room(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse> {
    let party = party(&caller);
    let room_id = path.into_inner();
    let room = db::run(&state.pool, move |conn| {
        conversation::visible_room(conn, party, room_id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(room))
}

/// Take a waiting room (staff); 409 if it is not waiting or you are at
/// your `max_active_rooms`.
#[utoipa::path(
    tag = "rooms",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The room's id")),
    request_body(content = Option<EmptyBody>),
    responses(
        (status = 200, description = "The room, now yours", body = Room),
        (status = 404, description = "No such room", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not waiting, or you are at capacity", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unauthorized, Forbidden, Unavailable,
    )
)]
#[post("/rooms/{id}/claim")]
pub async fn claim_room(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    _body: OptionalJson<EmptyBody>,
) -> Result<HttpResponse> {
    let agent = party(&caller).require_agent()?;
    let room_id = path.into_inner();
    let (room, changes) = db::run(&state.pool, move |conn| {
        assignment::claim(conn, room_id, agent)
    })
    .await?;
    state.settle(changes).await;
    Ok(HttpResponse::Ok().json(room))
}

/// No fields.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    staff_id: Uuid,
}

/// Give a room to another staff member (staff); 422 if they are not
/// staff, 409 if they are at capacity or the room is closed.
#[utoipa::path(
    tag = "rooms",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The room's id")),
    request_body = TransferBody,
    responses(
        (status = 200, description = "The room with its new assignee", body = Room),
        (status = 404, description = "No such room", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The room is closed, or the staff member is at capacity", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unauthorized, Forbidden, Unavailable,
    )
)]
#[post("/rooms/{id}/transfer")]
pub async fn transfer_room(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: Json<TransferBody>,
) -> Result<HttpResponse> {
    let by = party(&caller).require_agent()?;
    let room_id = path.into_inner();
    let target = body.into_inner().staff_id;
    let (room, changes) = db::run(&state.pool, move |conn| {
        assignment::transfer(conn, room_id, by, target)
    })
    .await?;
    state.settle(changes).await;
    Ok(HttpResponse::Ok().json(room))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriorityBody {
    priority: Priority,
}

/// Set a room's priority (staff), waiting rooms included: the queue is
/// ordered by priority, then age.
#[utoipa::path(
    tag = "rooms",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The room's id")),
    request_body = PriorityBody,
    responses(
        (status = 200, description = "The room", body = Room),
        (status = 404, description = "No such room", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The room is closed", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unauthorized, Forbidden, Unavailable,
    )
)]
#[post("/rooms/{id}/priority")]
pub async fn set_priority(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: Json<PriorityBody>,
) -> Result<HttpResponse> {
    party(&caller).require_agent()?;
    let room_id = path.into_inner();
    let priority = body.into_inner().priority;
    let (room, changes) = db::run(&state.pool, move |conn| {
        assignment::set_priority(conn, room_id, priority)
    })
    .await?;
    state.settle(changes).await;
    Ok(HttpResponse::Ok().json(room))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// Email the transcript to this address.
    transcript_email: Option<String>,
}

/// Close a room (its visitor, or staff). Closing a closed room changes
/// nothing.
#[utoipa::path(
    tag = "rooms",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The room's id")),
    request_body(content = Option<CloseBody>),
    responses(
        (status = 200, description = "The closed room", body = Room),
        (status = 404, description = "No such room, or not yours", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unauthorized, Forbidden, Unavailable,
    )
)]
#[post("/rooms/{id}/close")]
pub async fn close_room(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: OptionalJson<CloseBody>,
) -> Result<HttpResponse> {
    let party = party(&caller);
    let room_id = path.into_inner();
    let transcript_to = match body.0.and_then(|body| body.transcript_email) {
        Some(raw) => Some(
            Email::parse(&raw)
                .map_err(|err| Problem::invalid_field("transcript_email", err.to_string()))?,
        ),
        None => None,
    };
    let by = party.user_id();
    let (room, changes) = db::run(&state.pool, move |conn| {
        conversation::visible_room(conn, party, room_id)?;
        assignment::close(conn, room_id, by, transcript_to)
    })
    .await?;
    state.settle(changes).await;
    Ok(HttpResponse::Ok().json(room))
}
