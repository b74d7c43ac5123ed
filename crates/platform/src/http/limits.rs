//! Limits on the request head, answered in problem+json like every other
//! error. actix-http refuses heads over 128 KiB itself, with a bare 431
//! and no body, before any middleware runs; below that, this middleware
//! holds heads to [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`] and says so as a
//! problem. No client of the platform comes near either.

use super::problem::Problem;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::Error;

/// Request line and headers together, in bytes.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Headers in one request.
pub const MAX_HEADERS: usize = 64;

fn head_bytes(req: &ServiceRequest) -> usize {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    line + headers
}

fn too_large(detail: String) -> Problem {
    Problem::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request_header_fields_too_large",
        "Request header fields too large",
    )
    .detail(detail)
}

pub async fn request_head(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let count = req.headers().len();
    let refusal = if count > MAX_HEADERS {
        Some(too_large(format!(
            "a request may carry at most {MAX_HEADERS} headers"
        )))
    } else if head_bytes(&req) > MAX_HEAD_BYTES {
        Some(too_large(format!(
            "the request line and headers may take at most {MAX_HEAD_BYTES} bytes"
        )))
    } else {
        None
    };
    match refusal {
        Some(problem) => Ok(req
            .into_response(problem.to_response())
            .map_into_right_body()),
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}
