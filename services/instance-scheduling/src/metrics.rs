//! The scheduler's own metrics, on the service's registry beside the HTTP
//! ones.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct SchedulingMetrics {
    /// Allocations by outcome (`allocated`, `existing`, `refused`) and
    /// reason (`pack`, `spread`, `fallback_region`, `no_capacity`, `stale`,
    /// `region_full`, `user_limit`).
    pub allocations: IntCounterVec,
    /// Time to answer an allocation, database included.
    pub allocation_seconds: Histogram,
    /// Free slots of fresh active instances, by region (set by the leader).
    pub free_slots: IntGaugeVec,
    /// From a launch being asked for to its agent registering.
    pub time_to_ready_seconds: Histogram,
}

impl SchedulingMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            allocations: IntCounterVec::new(
                Opts::new(
                    "scheduling_allocations_total",
                    "Allocations, by outcome and reason",
                ),
                &["outcome", "reason"],
            )?,
            allocation_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "scheduling_allocation_seconds",
                    "Time to answer an allocation",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )?,
            free_slots: IntGaugeVec::new(
                Opts::new(
                    "scheduling_free_slots",
                    "Free slots of fresh active instances, by region",
                ),
                &["region"],
            )?,
            time_to_ready_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "scheduling_instance_time_to_ready_seconds",
                    "From a launch being asked for to its host agent registering",
                )
                .buckets(vec![
                    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
                ]),
            )?,
        };
        registry.register(Box::new(metrics.allocations.clone()))?;
        registry.register(Box::new(metrics.allocation_seconds.clone()))?;
        registry.register(Box::new(metrics.free_slots.clone()))?;
        registry.register(Box::new(metrics.time_to_ready_seconds.clone()))?;
        Ok(metrics)
    }
}
