//! Chat's own metrics, on the service's registry beside the HTTP ones.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct ChatMetrics {
    /// Open WebSocket connections, authenticated or not.
    pub connections: IntGauge,
    /// Client frames, by type (`invalid` for those that did not parse).
    pub frames_in: IntCounterVec,
    /// Frames written to clients.
    pub frames_out: IntCounter,
    /// Frames handed to connections' send queues.
    pub deliveries: IntCounter,
    /// Assignment decisions by trigger, outcome and reason.
    pub decisions: IntCounterVec,
    /// Connections closed because their send queue overflowed.
    pub slow_readers: IntCounter,
    /// Live frames not published (the broker slow or away).
    pub live_dropped: IntCounter,
}

impl ChatMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            connections: IntGauge::new("chat_ws_connections", "Open WebSocket connections")?,
            frames_in: IntCounterVec::new(
                Opts::new("chat_ws_frames_in_total", "Client frames received, by type"),
                &["type"],
            )?,
            frames_out: IntCounter::new("chat_ws_frames_out_total", "Frames sent to clients")?,
            deliveries: IntCounter::new(
                "chat_live_deliveries_total",
                "Frames handed to connections' send queues",
            )?,
            decisions: IntCounterVec::new(
                Opts::new(
                    "chat_assignment_decisions_total",
                    "Assignment decisions, by trigger, outcome and reason",
                ),
                &["trigger", "outcome", "reason"],
            )?,
            slow_readers: IntCounter::new(
                "chat_ws_slow_reader_disconnects_total",
                "Connections closed because their send queue overflowed",
            )?,
            live_dropped: IntCounter::new(
                "chat_live_publish_dropped_total",
                "Live frames not published to other replicas (the broker slow or away)",
            )?,
        };
        registry.register(Box::new(metrics.live_dropped.clone()))?;
        registry.register(Box::new(metrics.connections.clone()))?;
        registry.register(Box::new(metrics.frames_in.clone()))?;
        registry.register(Box::new(metrics.frames_out.clone()))?;
        registry.register(Box::new(metrics.deliveries.clone()))?;
        registry.register(Box::new(metrics.decisions.clone()))?;
        registry.register(Box::new(metrics.slow_readers.clone()))?;
        Ok(metrics)
    }

    /// A registry of its own, for code that runs without the service.
    pub fn unregistered() -> Self {
        match Self::register(&Registry::new()) {
            Ok(metrics) => metrics,
            Err(_) => unreachable!("a fresh registry has no name clashes"),
        }
    }
}
