//! The error type of service handlers: client mistakes carry their
//! problem+json, anything unexpected becomes an opaque 500 with the cause in
//! the log. Services use it as their one error type.

use crate::db::DbError;
use crate::Problem;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<diesel::result::Error> for Error {
    fn from(err: diesel::result::Error) -> Self {
        Error::Db(DbError::from(err))
    }
}

impl Error {
    fn problem(&self) -> Problem {
        match self {
            Error::Problem(problem) => problem.clone(),
            Error::Db(DbError::Unavailable(_)) => {
                Problem::unavailable("the database is not reachable right now")
            }
            Error::Db(err) if err.is_not_found() => Problem::not_found("no such resource"),
            Error::Db(_) | Error::Internal(_) => Problem::internal(),
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        if problem.status_code().is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        problem.to_response()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
