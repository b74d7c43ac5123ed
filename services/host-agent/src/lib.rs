//! The host agent: the small daemon on each compute instance. It listens
//! (port 9000), registers with instance-scheduling, heartbeats the
//! machine's real CPU and memory use and the sessions connected on it, and
//! admits a client only with a connection token it has verified itself
//! and the scheduler has then marked connected. No database: what it
//! knows lives in memory, and a restarted agent is a new instance.

pub mod agent;
pub mod cli;
pub mod config;
pub mod load;
pub mod metrics;
pub mod routes;
pub mod scheduler;
pub mod startup;
pub mod state;
pub mod tokens;

/// How the agent names itself in logs, traces and metrics.
pub const SERVICE: &str = "host-agent";
