//! JSON body and query extractors whose errors are problem+json naming the
//! offending field (actix's own only say "Json deserialize error").

use super::problem::{FieldError, Problem};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{error, web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use std::future::{ready, Ready};

/// Largest JSON body accepted, in bytes.
pub const JSON_LIMIT: usize = 64 * 1024;

/// A JSON body. Request types use `#[serde(deny_unknown_fields)]`, so an
/// unknown field is a client mistake named in the answer.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = json_body(req, payload);
        Box::pin(async move { parse_json(&body.await?).map(Json) })
    }
}

/// A JSON body that may be left out (no body, or only whitespace); when
/// present it is held to the rules of [`Json`].
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // No body is no body, whatever a client's library put in
        // Content-Type; a body is held to the rules of Json.
        let content_type = json_content_type(req);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = body.await.map_err(|err| payload_problem(&err))?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalJson(None));
            }
            content_type?;
            parse_json(&bytes).map(|value| OptionalJson(Some(value)))
        })
    }
}

/// `Ok` for a JSON content type (or none), else the 415.
fn json_content_type(req: &HttpRequest) -> Result<(), Problem> {
    let content_type = req.content_type();
    if content_type.is_empty()
        || content_type == "application/json"
        || content_type.ends_with("+json")
    {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
        )
        .detail("the body must be application/json"))
    }
}

/// The body's bytes, once its content type says JSON (or nothing) and its
/// size is within [`JSON_LIMIT`].
fn json_body(
    req: &HttpRequest,
    payload: &mut Payload,
) -> LocalBoxFuture<'static, Result<web::Bytes, Problem>> {
    let content_type = json_content_type(req);
    let body = web::Bytes::from_request(req, payload);
    Box::pin(async move {
        content_type?;
        body.await.map_err(|err| payload_problem(&err))
    })
}

fn payload_problem(err: &actix_web::Error) -> Problem {
    if err.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
        )
        .detail(format!("the body may be at most {JSON_LIMIT} bytes"))
    } else {
        Problem::bad_request("the request body could not be read")
    }
}

/// Deserializes `bytes`, naming the field that failed.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::bad_request("a JSON body is required"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => value,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => field_problem(&path, &inner.to_string()),
                _ => Problem::bad_request(format!("malformed JSON: {inner}")),
            });
        }
    };
    deserializer
        .end()
        .map_err(|err| Problem::bad_request(format!("malformed JSON: {err}")))?;
    Ok(value)
}

/// Turns a serde message into a field error: unknown and missing fields are
/// named inside the message, other errors by the path.
fn field_problem(path: &str, message: &str) -> Problem {
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_string();
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|marker| message.split_once(marker))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name.to_string());
    let field = match (named, path) {
        (Some(name), "." | "") => name,
        (Some(name), path) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_string()
        }
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "." | "") => "body".to_string(),
        (None, path) => path.to_string(),
    };
    Problem::validation(vec![FieldError::new(field, message)])
}

/// A query string, with the same error shape as [`Json`].
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_query(req.query_string()).map(Query))
    }
}

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, Problem> {
    check_query_is_utf8(query)?;
    let deserializer = serde_urlencoded::Deserializer::new(url_form(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        field_problem(&path, &err.into_inner().to_string())
    })
}

/// The query parser decodes invalid UTF-8 into replacement characters, so
/// `q=%FF` would quietly search for "\u{FFFD}": refuse it instead, naming
/// the parameter.
fn check_query_is_utf8(query: &str) -> Result<(), Problem> {
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name_text = String::from_utf8(percent_decode(name));
        let value_ok = std::str::from_utf8(&percent_decode(value)).is_ok();
        match (name_text, value_ok) {
            (Ok(_), true) => {}
            (Ok(name), false) => {
                return Err(Problem::bad_request(format!("`{name}` is not valid UTF-8"))
                    .with_errors(vec![FieldError::new(name, "is not valid UTF-8")]))
            }
            (Err(_), _) => {
                return Err(Problem::bad_request(
                    "a query parameter name is not valid UTF-8",
                ))
            }
        }
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` decoding of one name or value.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    decoded.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => decoded.push(b'%'),
            },
            b'+' => decoded.push(b' '),
            byte => decoded.push(byte),
        }
        i += 1;
    }
    decoded
}

fn url_form(bytes: &[u8]) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(bytes)
}

pub(super) fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        let problem = Problem::not_found(format!("invalid path parameter: {err}"));
        error::InternalError::from_response(err, problem.to_response()).into()
    })
}

pub(super) fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let problem = Problem::bad_request(format!("invalid query: {err}"));
        error::InternalError::from_response(err, problem.to_response()).into()
    })
}

/// The `Idempotency-Key` header of a mutation a client may retry: 1 to
/// 200 visible ASCII characters, or absent.
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, Problem> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| (1..=200).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Problem::bad_request("Idempotency-Key must be 1 to 200 visible ASCII characters")
                .with_errors(vec![FieldError::new(
                    "Idempotency-Key",
                    "must be 1 to 200 visible ASCII characters",
                )])
        })?;
    Ok(Some(key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        attempts: u8,
    }

    fn field_of(problem: &Problem) -> &str {
        &problem.errors[0].field
    }

    #[test]
    fn names_missing_unknown_and_mistyped_fields() {
        let missing = parse_json::<Login>(br#"{"attempts":1}"#).unwrap_err();
        assert_eq!(missing.status, 422);
        assert_eq!(field_of(&missing), "email");

        let unknown =
            parse_json::<Login>(br#"{"email":"a","attempts":1,"admin":true}"#).unwrap_err();
        assert_eq!(field_of(&unknown), "admin");

        let mistyped = parse_json::<Login>(br#"{"email":"a","attempts":"x"}"#).unwrap_err();
        assert_eq!(field_of(&mistyped), "attempts");
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        assert_eq!(parse_json::<Login>(b"{\"email\":").unwrap_err().status, 400);
        assert_eq!(parse_json::<Login>(b"").unwrap_err().status, 400);
        assert_eq!(
            parse_json::<Login>(br#"{"email":"a","attempts":1} trailing"#)
                .unwrap_err()
                .status,
            400
        );
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Page {
        limit: Option<u16>,
    }

    #[test]
    fn a_query_that_is_not_utf8_is_a_bad_request_naming_the_parameter() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Search {
            q: Option<String>,
        }
        let refused = parse_query::<Search>("q=%FF%FE").unwrap_err();
        assert_eq!(refused.status, 400);
        assert_eq!(field_of(&refused), "q");
        assert_eq!(
            parse_query::<Search>("q=%C3%A9t%C3%A9+x")
                .unwrap()
                .q
                .as_deref(),
            Some("été x")
        );
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%4"), b"%4");
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let err = parse_query::<Page>("limit=abc").unwrap_err();
        assert_eq!(field_of(&err), "limit");
        assert_eq!(parse_query::<Page>("limit=5").unwrap().limit, Some(5));
    }
}
