//! Where instances run: a provider launches and terminates host agents.
//! `process` (this machine's processes) is the one built; a container
//! provider (Docker Engine API) implements the same trait.

use futures_util::future::BoxFuture;
use uuid::Uuid;

/// An instance to launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub request_id: Uuid,
    pub instance_id: Uuid,
    pub region: String,
    pub capacity: i32,
}

/// How a terminate ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Termination {
    /// It was running and has stopped.
    Stopped,
    /// It was not running (it exited, or was never launched here).
    NotRunning(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth another try later (the database is away, the instance runs
    /// on another machine).
    #[error("{0}")]
    Transient(String),
    /// Will not work however often it is tried (no host-agent binary, no
    /// free port): the launch has failed.
    #[error("{0}")]
    Failed(String),
}

pub trait Provider: Send + Sync + 'static {
    /// The provider's name, as instances record it (`process`).
    fn name(&self) -> &'static str;

    /// Launches the instance; a second launch of one that runs changes
    /// nothing.
    fn launch<'a>(&'a self, spec: &'a LaunchSpec) -> BoxFuture<'a, Result<(), ProviderError>>;

    /// Stops the instance (SIGTERM for a process), waiting for it to exit.
    fn terminate(&self, instance_id: Uuid) -> BoxFuture<'_, Result<Termination, ProviderError>>;
}
