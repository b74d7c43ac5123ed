//! What every service of the platform stands on: configuration from the
//! environment, telemetry, the actix scaffolding (request ids, access log,
//! metrics, health, problem+json errors, JSON extraction) and the database.

pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod periodic;
pub mod shutdown;
pub mod telemetry;

pub use config::ConfigError;
pub use http::problem::{FieldError, Problem};
pub use shutdown::Shutdown;
