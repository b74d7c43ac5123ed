//! The service's one error type is the platform's.
pub use platform::error::{Error, Result};
