use crate::conversation;
use crate::error::Result;
use crate::model::{Body, ClientMsgId, Message};
use crate::routes::rooms::party;
use crate::state::AppState;
use crate::store::messages;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use authn::Caller;
use platform::db;
use platform::http::extract::{idempotency_key, Json, Query};
use platform::http::openapi::{BodyProblems, Forbidden, Invalid, Unauthorized, Unavailable};
use platform::http::pagination::{Page, PageRequest};
use platform::http::problem::ProblemBody;
use platform::Problem;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Messages after this seq (0, the default, is the start).
    #[param(minimum = 0)]
    after_seq: Option<i64>,
    /// Messages before this seq: with `limit=n`, the n just before it.
    #[param(minimum = 1)]
    before_seq: Option<i64>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page: continues in the same direction.
    cursor: Option<String>,
}

/// Where a page of messages starts and which way it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    After(i64),
    Before { after: i64, before: i64 },
}

fn window(query: &MessagesQuery) -> std::result::Result<Window, Problem> {
    if let Some(cursor) = query.cursor.as_deref().filter(|c| !c.is_empty()) {
        let bad = || Problem::invalid_field("cursor", "is not a valid cursor");
        let mut parts = cursor.split(':');
        let direction = parts.next().ok_or_else(bad)?;
        let seq: i64 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        // A backward page remembers the lower bound it was asked with.
        let lower: Option<i64> = match parts.next() {
            Some(raw) => Some(raw.parse().ok().filter(|v| *v >= 0).ok_or_else(bad)?),
            None => None,
        };
        if parts.next().is_some() || (direction == "a" && lower.is_some()) {
            return Err(bad());
        }
        return match direction {
            "a" if seq >= 0 => Ok(Window::After(seq)),
            "b" if seq >= 1 => Ok(Window::Before {
                after: lower.unwrap_or(0),
                before: seq,
            }),
            _ => Err(bad()),
        };
    }
    let after = query.after_seq.unwrap_or(0);
    if after < 0 {
        return Err(Problem::invalid_field("after_seq", "must be 0 or more"));
    }
    match query.before_seq {
        None => Ok(Window::After(after)),
        Some(before) if before >= 1 => Ok(Window::Before { after, before }),
        Some(_) => Err(Problem::invalid_field("before_seq", "must be 1 or more")),
    }
}

/// A room's messages in seq order (its visitor, or staff).
#[utoipa::path(
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The room's id"), MessagesQuery),
    responses(
        (status = 200, description = "A page of messages, ascending by seq", body = Page<Message>),
        (status = 400, description = "A parameter is not UTF-8", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or not yours", body = ProblemBody, content_type = "application/problem+json"),
        Invalid, Unauthorized, Forbidden, Unavailable,
    )
)]
#[get("/rooms/{id}/messages")]
pub async fn list_messages(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    query: Query<MessagesQuery>,
) -> Result<HttpResponse> {
    let party = party(&caller);
    let room_id = path.into_inner();
    let query = query.0;
    let limit = PageRequest::parse(query.limit, None)?.limit;
    let window = window(&query)?;
    let rows = db::run(&state.pool, move |conn| {
        conversation::visible_room(conn, party, room_id)?;
        let rows = match window {
            Window::After(after) => messages::page(conn, room_id, after, None, limit + 1)?,
            Window::Before { after, before } => {
                messages::page(conn, room_id, after, Some(before), limit + 1)?
            }
        };
        Ok::<_, crate::error::Error>(rows)
    })
    .await?;
    let page = page_of(window, rows, limit);
    Ok(HttpResponse::Ok().json(page))
}

fn page_of(window: Window, mut rows: Vec<Message>, limit: i64) -> Page<Message> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    let next_cursor = match window {
        Window::After(_) => {
            rows.truncate(limit);
            more.then(|| rows.last().map(|row| format!("a:{}", row.seq)))
                .flatten()
        }
        Window::Before { after, .. } => {
            // The extra row is the oldest: drop it, and go on before the
            // oldest kept.
            if more {
                rows.remove(0);
            }
            more.then(|| rows.first().map(|row| format!("b:{}:{after}", row.seq)))
                .flatten()
        }
    };
    Page {
        items: rows,
        next_cursor,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostBody {
    /// 1 to 4,000 characters.
    #[schema(min_length = 1, max_length = 4000)]
    body: String,
    /// The client's id of the message; a retry with the same id is stored
    /// once. Defaults to the `Idempotency-Key` header, else a new id.
    client_msg_id: Option<String>,
}

/// Post a message (the room's visitor, or staff, in an open room).
#[utoipa::path(
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The room's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "The client_msg_id when the body has none"),
    ),
    request_body = PostBody,
    responses(
        (status = 201, description = "The message (a retry answers with the one stored first)", body = Message),
        (status = 404, description = "No such room, or not yours", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The room is closed", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unauthorized, Forbidden, Unavailable,
    )
)]
#[post("/rooms/{id}/messages")]
pub async fn post_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: Json<PostBody>,
) -> Result<HttpResponse> {
    let party = party(&caller);
    party.require_rooms()?;
    let room_id = path.into_inner();
    let body = body.into_inner();
    let text =
        Body::parse(&body.body).map_err(|err| Problem::invalid_field("body", err.to_string()))?;
    let client_msg_id = match body.client_msg_id.or(idempotency_key(&req)?) {
        Some(raw) => ClientMsgId::parse(&raw)
            .map_err(|err| Problem::invalid_field("client_msg_id", err.to_string()))?,
        None => ClientMsgId::generate(),
    };
    let posted = conversation::post(
        &state.messages,
        &state.pool,
        party,
        room_id,
        &client_msg_id,
        &text,
    )
    .await?;
    if posted.created {
        state.announce_message(&posted.message);
    }
    Ok(HttpResponse::Created().json(posted.message))
}
