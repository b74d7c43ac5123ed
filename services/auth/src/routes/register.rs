use crate::error::{Error, Result};
use crate::signup::create_user;
use crate::state::AppState;
use crate::store::email_tokens::{self, Purpose};
use crate::store::users::{NewUser, PublicUser};
use actix_web::post;
use actix_web::{web, HttpResponse};
use diesel::Connection;
use domain::messages::{EmailJob, EmailTemplate, UserKind};
use domain::{DisplayName, Email, Password, Role};
use platform::db::{self, DbError};
use platform::http::extract::Json;
use platform::http::openapi::{BodyProblems, Unavailable};
use platform::http::problem::ProblemBody;
use platform::{FieldError, Problem};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    email: String,
    password: String,
    display_name: String,
}

/// The answer to a registration: the new user (no token; sign in next).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub user: PublicUser,
}

struct Registration {
    email: Email,
    password: Password,
    display_name: DisplayName,
}

fn parse(body: RegisterBody) -> Result<Registration, Problem> {
    let email = Email::parse(&body.email);
    let password = Password::parse(&body.password);
    let display_name = DisplayName::parse(&body.display_name);
    match (email, password, display_name) {
        (Ok(email), Ok(password), Ok(display_name)) => Ok(Registration {
            email,
            password,
            display_name,
        }),
        (email, password, display_name) => {
            let errors = [
                ("email", email.err()),
                ("password", password.err()),
                ("display_name", display_name.err()),
            ]
            .into_iter()
            .filter_map(|(field, err)| err.map(|e| FieldError::new(field, e.to_string())))
            .collect();
            Err(Problem::validation(errors))
        }
    }
}

/// `POST /register`: creates a user; `user.registered` and a `verify_email`
/// job leave through the outbox in the same transaction.
#[utoipa::path(
    tag = "identity",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Created; `user.registered` and a `verify_email` job are queued", body = Registered),
        (status = 409, description = "An account with this email exists", body = ProblemBody, content_type = "application/problem+json"),
        BodyProblems, Unavailable,
    )
)]
#[post("/register")]
pub async fn register(
    state: web::Data<AppState>,
    body: Json<RegisterBody>,
) -> Result<HttpResponse> {
    let registration = parse(body.into_inner())?;
    let hash = state.hasher.hash(&registration.password).await?;
    let user = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let user = create_user(
                conn,
                NewUser::new(
                    Some(registration.email.as_str().to_string()),
                    registration.display_name.as_str().to_string(),
                    Some(hash),
                    &[Role::User],
                ),
                UserKind::Registered,
            )?;
            let token = email_tokens::create(conn, user.user_id(), Purpose::VerifyEmail)?;
            bus::outbox::enqueue(
                conn,
                EmailJob {
                    to: registration.email.as_str().to_string(),
                    template: EmailTemplate::VerifyEmail,
                    vars: BTreeMap::from([
                        ("display_name".to_string(), user.display_name.clone()),
                        ("token".to_string(), token.expose().to_string()),
                    ]),
                    idempotency_key: format!(
                        "verify_email:{}",
                        token
                            .hash()
                            .iter()
                            .take(16)
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                    ),
                },
            )?;
            Ok::<_, diesel::result::Error>(user)
        })
        .map_err(|err| {
            let err = DbError::from(err);
            if err.is_unique_violation() {
                Error::from(
                    Problem::conflict("email_taken", "an account with this email already exists")
                        .with_errors(vec![FieldError::new("email", "is already registered")]),
                )
            } else {
                Error::from(err)
            }
        })
    })
    .await?;
    state.relay.wake();
    Ok(HttpResponse::Created().json(Registered {
        user: user.to_public(),
    }))
}
