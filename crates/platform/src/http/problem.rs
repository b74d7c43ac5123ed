//! RFC 9457 problem details, the only error body the platform sends.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use std::fmt;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// One field that failed validation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A problem+json body. `code` is a stable machine-readable name, also used
/// as the last segment of `type`. Boxed, so `Result<T, Problem>` stays small.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Problem(Box<ProblemBody>);

/// An RFC 9457 problem: `code` is stable and machine-readable; `errors`
/// names each field that is wrong.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(title = "Problem")]
pub struct ProblemBody {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip)]
    #[schema(ignore)]
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl std::ops::Deref for Problem {
    type Target = ProblemBody;
    fn deref(&self) -> &ProblemBody {
        &self.0
    }
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, title: &str) -> Self {
        Self(Box::new(ProblemBody {
            type_: format!("https://errors.platform.dev/{code}"),
            title: title.to_string(),
            status: status.as_u16(),
            code: code.to_string(),
            detail: None,
            errors: Vec::new(),
            headers: Vec::new(),
        }))
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.0.errors = errors;
        self
    }

    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.0.headers.push((name, value));
        self
    }

    /// 422 naming the fields that are wrong.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "The request is not valid",
        )
        .detail(detail)
        .with_errors(errors)
    }

    /// 422 for a single field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", "Bad request").detail(detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
        )
        .detail(detail)
    }

    /// 401 for a bearer token that is missing, malformed, expired or not ours.
    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "Invalid access token",
        )
        .detail(detail)
        .header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found").detail(detail)
    }

    pub fn conflict(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, "Conflict").detail(detail)
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let mut problem = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "Too many requests",
        )
        .detail(format!("try again in {retry_after_secs} seconds"));
        if let Ok(value) = HeaderValue::from_str(&retry_after_secs.max(1).to_string()) {
            problem = problem.header(header::RETRY_AFTER, value);
        }
        problem
    }

    /// 503: a dependency (database, broker) is not available right now.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        )
        .detail(detail)
        .header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    /// An opaque 500: the cause belongs in the log, never in the body.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        )
    }

    /// What the answer says, for callers that carry it elsewhere (a
    /// WebSocket error frame).
    pub fn body(&self) -> &ProblemBody {
        &self.0
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status_code());
        builder.insert_header((header::CONTENT_TYPE, CONTENT_TYPE));
        builder.insert_header((header::CACHE_CONTROL, "no-store"));
        for (name, value) in &self.headers {
            builder.insert_header((name.clone(), value.clone()));
        }
        builder.json(self)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.code)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        Problem::status_code(self)
    }

    fn error_response(&self) -> HttpResponse {
        self.to_response()
    }
}

/// A service's route table, `(method, path pattern)` with `{name}`
/// standing for one path segment: read from its OpenAPI document, which
/// is generated from the handlers that are mounted.
#[derive(Debug, Clone, Default)]
pub struct RouteTable(Vec<(String, String)>);

impl RouteTable {
    pub fn new(routes: Vec<(String, String)>) -> Self {
        Self(routes)
    }

    /// Every operation of `api`, methods in upper case.
    pub fn from_openapi(api: &utoipa::openapi::OpenApi) -> Self {
        let mut routes = Vec::new();
        for (path, item) in &api.paths.paths {
            for (method, operation) in [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("OPTIONS", &item.options),
                ("HEAD", &item.head),
                ("PATCH", &item.patch),
                ("TRACE", &item.trace),
            ] {
                if operation.is_some() {
                    routes.push((method.to_string(), path.clone()));
                }
            }
        }
        Self(routes)
    }

    /// The methods served at `path`, in table order.
    pub fn methods_for(&self, path: &str) -> Vec<&str> {
        let mut methods: Vec<&str> = Vec::new();
        for (method, pattern) in &self.0 {
            if path_matches(pattern, path) && !methods.contains(&method.as_str()) {
                methods.push(method);
            }
        }
        methods
    }
}

/// Default service of every service: a path of its route table asked with
/// a method it does not serve is a 405 whose `Allow` lists the ones it
/// does (RFC 9110 §15.5.6); any other path a 404.
pub async fn fallback(request: HttpRequest) -> HttpResponse {
    let table = request.app_data::<actix_web::web::Data<RouteTable>>();
    let allowed = table
        .map(|table| table.methods_for(request.path()))
        .unwrap_or_default();
    if allowed.is_empty() {
        Problem::not_found("no such route").to_response()
    } else {
        method_not_allowed(&allowed).to_response()
    }
}

fn method_not_allowed(allowed: &[&str]) -> Problem {
    let list = allowed.join(", ");
    let problem = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
    )
    .detail(format!("this route serves {list}"));
    match HeaderValue::from_str(&list) {
        Ok(value) => problem.header(header::ALLOW, value),
        Err(_) => problem,
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let mut expected = pattern.split('/');
    let mut actual = path.split('/');
    loop {
        match (expected.next(), actual.next()) {
            (None, None) => return true,
            (Some(want), Some(got)) => {
                let placeholder = want.starts_with('{') && want.ends_with('}');
                if !(got == want || placeholder && !got.is_empty()) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RouteTable;

    fn table() -> RouteTable {
        RouteTable::new(
            [
                ("GET", "/api/x/me"),
                ("PATCH", "/api/x/me"),
                ("GET", "/api/x/users/{id}"),
                ("POST", "/api/x/users/{id}/disable"),
            ]
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect(),
        )
    }

    fn methods_for(path: &str) -> Vec<String> {
        table()
            .methods_for(path)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_known_path_lists_its_methods() {
        assert_eq!(methods_for("/api/x/me"), ["GET", "PATCH"]);
        assert_eq!(methods_for("/api/x/users/42"), ["GET"]);
        assert_eq!(methods_for("/api/x/users/42/disable"), ["POST"]);
    }

    #[test]
    fn other_paths_list_nothing() {
        for path in [
            "/api/x",
            "/api/x/",
            "/api/x/me/",
            "/api/x/users//disable",
            "/api/x/users/42/enable",
            "/api/x/users/42/disable/again",
        ] {
            assert!(methods_for(path).is_empty(), "{path}");
        }
    }
}
