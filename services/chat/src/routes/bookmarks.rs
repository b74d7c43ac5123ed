use crate::error::Result;
use crate::model::Note;
use crate::routes::rooms::party;
use crate::state::AppState;
use crate::store::bookmarks::{self, BookmarkRow};
use actix_web::{delete, get, put, web, HttpResponse};
use authn::Caller;
use chrono::{DateTime, Utc};
use platform::db;
use platform::http::extract::{Json, Query};
use platform::http::openapi::{BodyProblems, Forbidden, Invalid, Unauthorized, Unavailable};
use platform::http::pagination::{Page, PageRequest};
use platform::http::problem::ProblemBody;
use platform::http::respond::no_content;
use platform::Problem;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A staff member's note on a visitor; each staff member has their own.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Bookmark {
    visitor_id: Uuid,
    note: String,
    updated_at: DateTime<Utc>,
}

impl From<BookmarkRow> for Bookmark {
    fn from(row: BookmarkRow) -> Self {
        Self {
            visitor_id: row.visitor_id,
            note: row.note,
            updated_at: row.updated_at,
        }
    }
}

fn no_bookmark() -> Problem {
    Problem::not_found("no bookmark for this visitor")
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BookmarksQuery {
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Your bookmarks (staff), by visitor id.
#[utoipa::path(
    tag = "bookmarks",
    security(("bearer" = [])),
    params(BookmarksQuery),
    responses(
        (status = 200, description = "A page of bookmarks", body = Page<Bookmark>),
        (status = 400, description = "A parameter is not UTF-8", body = ProblemBody, content_type = "application/problem+json"),
        Invalid, Unauthorized, Forbidden, Unavailable,
    )
)]
#[get("/bookmarks")]
pub async fn list_bookmarks(
    state: web::Data<AppState>,
    caller: Caller,
    query: Query<BookmarksQuery>,
) -> Result<HttpResponse> {
    let staff = party(&caller).require_agent()?;
    let page = PageRequest::parse(query.0.limit, query.0.cursor.as_deref())?;
    let rows = db::read(&state.pool, move |conn| {
        bookmarks::list(conn, staff, page.cursor, page.rows_to_read())
    })
    .await?;
    Ok(Page::from_rows(&page, rows, |row| row.visitor_id)
        .map(Bookmark::from)
        .respond())
}

/// Your bookmark of a visitor (staff).
#[utoipa::path(
    tag = "bookmarks",
    security(("bearer" = [])),
    params(("visitor_id" = Uuid, Path, description = "The visitor's id")),
    responses(
        (status = 200, description = "The bookmark", body = Bookmark),
        (status = 404, description = "No bookmark for this visitor", body = ProblemBody, content_type = "application/problem+json"),
        Unauthorized, Forbidden, Unavailable,
    )
)]
#[get("/bookmarks/{visitor_id}")]
pub async fn show_bookmark(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse> {
    let staff = party(&caller).require_agent()?;
    let visitor = path.into_inner();
    let row = db::read(&state.pool, move |conn| {
        bookmarks::find(conn, staff, visitor)
    })
    .await?
    .ok_or_else(no_bookmark)?;
    Ok(HttpResponse::Ok().json(Bookmark::from(row)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// Up to 2,000 characters.
    #[schema(max_length = 2000)]
    note: String,
}

/// Bookmark a visitor with a note, or change the note (staff).
#[utoipa::path(
    tag = "bookmarks",
    security(("bearer" = [])),
    params(("visitor_id" = Uuid, Path, description = "The visitor's id")),
    request_body = NoteBody,
    responses(
        (status = 200, description = "The bookmark, changed", body = Bookmark),
        (status = 201, description = "The bookmark, new", body = Bookmark),
        BodyProblems, Unauthorized, Forbidden, Unavailable,
    )
)]
#[put("/bookmarks/{visitor_id}")]
pub async fn put_bookmark(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: Json<NoteBody>,
) -> Result<HttpResponse> {
    let staff = party(&caller).require_agent()?;
    let visitor = path.into_inner();
    let note = Note::parse(&body.into_inner().note)
        .map_err(|err| Problem::invalid_field("note", err.to_string()))?
        .into_inner();
    let (row, created) = db::run(&state.pool, move |conn| {
        bookmarks::put(conn, staff, visitor, &note).map_err(crate::error::Error::from)
    })
    .await?;
    let mut response = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(Bookmark::from(row)))
}

/// Remove your bookmark of a visitor (staff).
#[utoipa::path(
    tag = "bookmarks",
    security(("bearer" = [])),
    params(("visitor_id" = Uuid, Path, description = "The visitor's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No bookmark for this visitor", body = ProblemBody, content_type = "application/problem+json"),
        Unauthorized, Forbidden, Unavailable,
    )
)]
#[delete("/bookmarks/{visitor_id}")]
pub async fn delete_bookmark(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse> {
    let staff = party(&caller).require_agent()?;
    let visitor = path.into_inner();
    let deleted = db::run(&state.pool, move |conn| {
        bookmarks::delete(conn, staff, visitor).map_err(crate::error::Error::from)
    })
    .await?;
    if deleted {
        Ok(no_content())
    } else {
        Err(no_bookmark().into())
    }
}
