use crate::assignment;
use crate::error::Result;
use crate::live::frames::PresenceStatus;
use crate::routes::rooms::party;
use crate::state::AppState;
use crate::store::agents::{self, AgentRow};
use actix_web::{get, put, web, HttpResponse};
use authn::Caller;
use platform::db;
use platform::http::extract::{Json, Query};
use platform::http::openapi::{BodyProblems, Forbidden, Invalid, Unauthorized, Unavailable};
use platform::http::pagination::{Page, PageRequest};
use platform::http::problem::ProblemBody;
use platform::Problem;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How many rooms a staff member takes at once, and whether they are
/// emailed about waiting rooms while offline.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[schema(minimum = 0, maximum = 1000)]
    max_active_rooms: i32,
    notify_by_email: bool,
}

impl From<&AgentRow> for Settings {
    fn from(row: &AgentRow) -> Self {
        Self {
            max_active_rooms: row.max_active_rooms,
            notify_by_email: row.notify_by_email,
        }
    }
}

/// Your chat settings (staff); defaults 3 and true.
#[utoipa::path(
    tag = "staff",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Your settings", body = Settings),
        Unauthorized, Forbidden, Unavailable,
    )
)]
#[get("/staff/me/settings")]
pub async fn show_settings(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let agent = party(&caller).require_agent()?;
    let row = db::run(&state.pool, move |conn| {
        agents::ensure(conn, agent)?;
        agents::find(conn, agent)?.ok_or(crate::error::Error::from(diesel::result::Error::NotFound))
    })
    .await?;
    Ok(HttpResponse::Ok().json(Settings::from(&row)))
}

/// Change your chat settings (staff). More capacity lets waiting rooms
/// come to you at once.
#[utoipa::path(
    tag = "staff",
    security(("bearer" = [])),
    request_body = Settings,
    responses(
        (status = 200, description = "Your settings", body = Settings),
        BodyProblems, Unauthorized, Forbidden, Unavailable,
    )
)]
#[put("/staff/me/settings")]
pub async fn update_settings(
    state: web::Data<AppState>,
    caller: Caller,
    body: Json<Settings>,
) -> Result<HttpResponse> {
    let agent = party(&caller).require_agent()?;
    let settings = body.into_inner();
    if !(0..=1000).contains(&settings.max_active_rooms) {
        return Err(
            Problem::invalid_field("max_active_rooms", "must be between 0 and 1000").into(),
        );
    }
    let (row, changes) = db::run(&state.pool, move |conn| {
        assignment::update_settings(
            conn,
            agent,
            settings.max_active_rooms,
            settings.notify_by_email,
        )
    })
    .await?;
    state.settle(changes).await;
    Ok(HttpResponse::Ok().json(Settings::from(&row)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Presence {
    staff_id: Uuid,
    status: PresenceStatus,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PresenceQuery {
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Who of the staff is online (staff).
#[utoipa::path(
    tag = "staff",
    security(("bearer" = [])),
    params(PresenceQuery),
    responses(
        (status = 200, description = "Staff members and their presence, by id", body = Page<Presence>),
        (status = 400, description = "A parameter is not UTF-8", body = ProblemBody, content_type = "application/problem+json"),
        Invalid, Unauthorized, Forbidden, Unavailable,
    )
)]
#[get("/presence")]
pub async fn list_presence(
    state: web::Data<AppState>,
    caller: Caller,
    query: Query<PresenceQuery>,
) -> Result<HttpResponse> {
    party(&caller).require_agent()?;
    let page = PageRequest::parse(query.0.limit, query.0.cursor.as_deref())?;
    let rows = db::read(&state.pool, move |conn| {
        agents::presence_page(conn, page.cursor, page.rows_to_read())
    })
    .await?;
    Ok(Page::from_rows(&page, rows, |(id, _)| *id)
        .map(|(staff_id, online)| Presence {
            staff_id,
            status: if online {
                PresenceStatus::Online
            } else {
                PresenceStatus::Offline
            },
        })
        .respond())
}
