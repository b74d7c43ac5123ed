use crate::error::{Error, Result};
use crate::http;
use crate::state::AppState;
use crate::store::sessions::{self, SessionRow};
use actix_web::{delete, get};
use actix_web::{web, HttpResponse};
use authn::Caller;
use chrono::{DateTime, Utc};
use domain::SessionId;
use platform::db;
use platform::http::extract::Query;
use platform::http::openapi::{Invalid, Unauthorized, Unavailable};
use platform::http::pagination::{Page, PageRequest};
use platform::http::problem::ProblemBody;
use platform::http::respond::no_content;
use platform::Problem;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    id: Uuid,
    created_at: DateTime<Utc>,
    last_used_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    user_agent: Option<String>,
    ip: Option<String>,
    current: bool,
}

impl SessionView {
    fn new(row: SessionRow, current: SessionId) -> Self {
        Self {
            current: row.id == current.as_uuid(),
            id: row.id,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            user_agent: row.user_agent,
            ip: row.ip,
        }
    }
}

/// `GET /sessions`: the caller's live sessions, newest first.
#[utoipa::path(
    tag = "sessions",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "The caller's live sessions, newest first", body = Page<SessionView>),
        (status = 400, description = "A parameter is not UTF-8", body = ProblemBody, content_type = "application/problem+json"),
        Invalid, Unauthorized, Unavailable,
    )
)]
#[get("/sessions")]
pub async fn list_sessions(
    state: web::Data<AppState>,
    caller: Caller,
    page: Query<PageQuery>,
) -> Result<HttpResponse> {
    let request = PageRequest::parse(page.0.limit, page.0.cursor.as_deref())?;
    let (limit, cursor) = (request.limit, request.cursor);
    let user_id = caller.user_id;
    let session_id = caller.session_id;
    let idle = state.idle_timeout();
    let rows = match cursor {
        // The first page, which nearly every call asks for, is read in
        // batches with other callers' first pages.
        None => state
            .session_pages
            .get((user_id, request.rows_to_read()))
            .await?
            .unwrap_or_default(),
        Some(cursor) => {
            db::read(&state.pool, move |conn| {
                sessions::list_live_after(conn, user_id, idle, cursor, limit + 1)
            })
            .await?
        }
    };
    // The listing doubles as the liveness check of the caller's own session
    // when it is on the first page; otherwise ask directly.
    if cursor.is_some()
        || rows.len() as i64 > limit
        || !rows.iter().any(|r| r.id == session_id.as_uuid())
    {
        http::live_session(&state, &caller).await?;
    }
    let page =
        Page::from_rows(&request, rows, |row| row.id).map(|row| SessionView::new(row, session_id));
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(page))
}

/// `DELETE /sessions/{id}`: ends one of the caller's sessions.
#[utoipa::path(
    tag = "sessions",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "One of the caller's sessions")),
    responses(
        (status = 204, description = "The session ended"),
        (status = 404, description = "No such session of the caller", body = ProblemBody, content_type = "application/problem+json"),
        Unauthorized, Unavailable,
    )
)]
#[delete("/sessions/{id}")]
pub async fn revoke_session(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse> {
    http::live_session(&state, &caller).await?;
    let target = SessionId(path.into_inner());
    let user_id = caller.user_id;
    let revoked = db::run(&state.pool, move |conn| {
        match sessions::find(conn, target)? {
            Some(session) if session.user_id == user_id.as_uuid() => {
                sessions::revoke(conn, target, "revoked_by_user")?;
                Ok(true)
            }
            _ => Ok::<_, Error>(false),
        }
    })
    .await?;
    if revoked {
        Ok(no_content())
    } else {
        Err(Problem::not_found("no such session").into())
    }
}
