//! The agent's own metrics, on the service's registry beside the HTTP
//! ones (`GET /metrics`).

use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct AgentMetrics {
    /// `POST /connect` answers by outcome: `admitted`, `invalid_token`,
    /// `already_used`, `reservation_over`, `not_this_instance`,
    /// `instance_not_serving`, `scheduler_unavailable`, `draining`,
    /// `not_registered`, `terminating`.
    pub connects: IntCounterVec,
    /// Heartbeats by outcome: `ok`, `refused` (4xx), `unavailable`.
    pub heartbeats: IntCounterVec,
    /// Registration attempts by outcome: `registered`, `refused`,
    /// `unavailable`.
    pub registrations: IntCounterVec,
    /// Sessions connected on this instance now.
    pub connected_sessions: IntGauge,
    /// The machine's CPU use at the last heartbeat, 0 to 100.
    pub cpu_percent: Gauge,
    /// The machine's memory use at the last heartbeat, 0 to 100.
    pub memory_percent: Gauge,
}

impl AgentMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            connects: IntCounterVec::new(
                Opts::new(
                    "host_agent_connects_total",
                    "Client connection attempts, by outcome",
                ),
                &["outcome"],
            )?,
            heartbeats: IntCounterVec::new(
                Opts::new("host_agent_heartbeats_total", "Heartbeats, by outcome"),
                &["outcome"],
            )?,
            registrations: IntCounterVec::new(
                Opts::new(
                    "host_agent_registrations_total",
                    "Registration attempts, by outcome",
                ),
                &["outcome"],
            )?,
            connected_sessions: IntGauge::new(
                "host_agent_connected_sessions",
                "Sessions connected on this instance",
            )?,
            cpu_percent: Gauge::new(
                "host_agent_cpu_percent",
                "The machine's CPU use at the last heartbeat",
            )?,
            memory_percent: Gauge::new(
                "host_agent_memory_percent",
                "The machine's memory use at the last heartbeat",
            )?,
        };
        registry.register(Box::new(metrics.connects.clone()))?;
        registry.register(Box::new(metrics.heartbeats.clone()))?;
        registry.register(Box::new(metrics.registrations.clone()))?;
        registry.register(Box::new(metrics.connected_sessions.clone()))?;
        registry.register(Box::new(metrics.cpu_percent.clone()))?;
        registry.register(Box::new(metrics.memory_percent.clone()))?;
        Ok(metrics)
    }
}
