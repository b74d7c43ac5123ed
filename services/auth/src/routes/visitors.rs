use crate::error::{Error, Result};
use crate::http;
use crate::http::TokenAnswer;
use crate::signup::create_user;
use crate::state::AppState;
use crate::store::sessions;
use crate::store::users::NewUser;
use actix_web::http::StatusCode;
use actix_web::post;
use actix_web::{web, HttpRequest, HttpResponse};
use diesel::Connection;
use domain::messages::UserKind;
use domain::{DisplayName, Role};
use platform::db;
use platform::http::extract::OptionalJson;
use platform::http::openapi::{BodyProblems, Unavailable};
use platform::Problem;
use serde::Deserialize;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitorBody {
    display_name: Option<String>,
}

/// `POST /visitors`: an anonymous visitor with a session of its own. The
/// body is optional.
#[utoipa::path(
    tag = "identity",
    request_body(content = Option<VisitorBody>, description = "Optional: no body makes a visitor named Visitor"),
    responses(
        (status = 201, description = "A visitor, signed in; the refresh token is in the `refresh_token` cookie", body = TokenAnswer),
        BodyProblems, Unavailable,
    )
)]
#[post("/visitors")]
pub async fn create_visitor(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: OptionalJson<VisitorBody>,
) -> Result<HttpResponse> {
    let body = body.0.unwrap_or_default();
    let display_name = match body.display_name.as_deref() {
        Some(raw) => DisplayName::parse(raw)
            .map_err(|e| Problem::invalid_field("display_name", e.to_string()))?,
        None => DisplayName::parse("Visitor").map_err(|e| anyhow::anyhow!(e))?,
    };
    let client = http::client(&state, &req);
    let absolute = state.absolute_timeout();
    let (user, session, refresh) = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let user = create_user(
                conn,
                NewUser::new(
                    None,
                    display_name.as_str().to_string(),
                    None,
                    &[Role::Visitor],
                ),
                UserKind::Visitor,
            )?;
            let (session, refresh) = sessions::open(conn, user.user_id(), absolute, &client)?;
            Ok::<_, diesel::result::Error>((user, session, refresh))
        })
        .map_err(Error::from)
    })
    .await?;
    state.relay.wake();
    http::tokens(&state, StatusCode::CREATED, &user, &session, &refresh)
}
