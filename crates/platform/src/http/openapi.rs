//! What every service's OpenAPI document shares: its info, the bearer
//! security scheme, and the problem+json answers.

use super::health::ApiDocs;
use super::problem::ProblemBody;
use std::collections::BTreeMap;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr};
use utoipa::IntoResponses;

/// The security scheme the services' operations name: `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

/// The document before the routes are added.
pub fn base(docs: ApiDocs) -> OpenApi {
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(docs.title)
                .description(Some(docs.description))
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .build()
}

/// Adds what the routes cannot say themselves: the bearer scheme and the
/// problem schema that the reusable answers refer to.
pub fn finish(api: &mut OpenApi) {
    add_problem_schema(api);
    let components = api.components.get_or_insert_with(Components::new);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
}

/// Registers the problem schema (and what it refers to) once, for the
/// reusable answers below, which refer to it by name.
pub(super) fn add_problem_schema(api: &mut OpenApi) {
    use utoipa::{PartialSchema, ToSchema};
    let components = api.components.get_or_insert_with(Components::new);
    let mut schemas = Vec::new();
    ProblemBody::schemas(&mut schemas);
    schemas.push((ProblemBody::name().into_owned(), ProblemBody::schema()));
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
}

fn problem(description: &str) -> RefOr<Response> {
    use utoipa::ToSchema;
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                super::problem::CONTENT_TYPE,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ProblemBody::name())))
                    .build(),
            )
            .build(),
    )
}

fn answers(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|(status, description)| (status.to_string(), problem(description)))
        .collect()
}

/// The answers of an operation that reads a JSON body it may refuse:
/// 400 (missing or not JSON), 413 (over 64 KiB), 415 (another type) and
/// 422 (a field is wrong; `errors` names each).
pub struct BodyProblems;

impl IntoResponses for BodyProblems {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        answers(&[
            (400, "The body is missing or is not JSON"),
            (413, "The body is over 64 KiB"),
            (415, "The body is not application/json"),
            (422, "A field is invalid; `errors` names each one"),
        ])
    }
}

/// 422: a parameter is invalid; `errors` names it.
pub struct Invalid;

impl IntoResponses for Invalid {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        answers(&[(422, "A parameter is invalid; `errors` names it")])
    }
}

/// 401 with `WWW-Authenticate`: no access token, or one that is invalid.
pub struct Unauthorized;

impl IntoResponses for Unauthorized {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        answers(&[(401, "No valid access token")])
    }
}

/// 403: the caller's roles do not allow this.
pub struct Forbidden;

impl IntoResponses for Forbidden {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        answers(&[(403, "Not allowed for the caller")])
    }
}

/// 503 with `Retry-After`: the database or the broker is unavailable.
pub struct Unavailable;

impl IntoResponses for Unavailable {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        answers(&[(
            503,
            "A dependency is unavailable; try again after Retry-After seconds",
        )])
    }
}
