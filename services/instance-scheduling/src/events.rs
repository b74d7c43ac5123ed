//! Events the scheduler consumes from its queue
//! `instance-scheduling.events`: the worker's word that an instance is
//! gone (`instance.terminated`) or never came (`instance.launch_failed`).
//! Both are idempotent: a terminated instance stays terminated.

use crate::store::fleet;
use bus::inbox::{Inboxed, Transactional};
use bus::{ConsumerSpec, HandlerError, Incoming};
use diesel::prelude::*;
use domain::messages::{Contract, InstanceLaunchFailed, InstanceTerminated};
use platform::db::PgPool;
use std::time::Duration;
use uuid::Uuid;

pub const QUEUE: &str = "instance-scheduling.events";

pub struct InstanceEvents;

impl InstanceEvents {
    pub fn handler(pool: PgPool) -> Inboxed<Self> {
        Inboxed::new(pool, QUEUE, Self)
    }

    pub fn spec(retry_delays: Vec<Duration>) -> ConsumerSpec {
        let events = bus::topology::EVENTS;
        ConsumerSpec::new(QUEUE)
            .bind(events, InstanceTerminated::TYPE)
            .bind(events, InstanceLaunchFailed::TYPE)
            .retry_delays(retry_delays)
            .prefetch(64)
            .batch(32)
            .concurrency(1)
    }
}

/// An instance gone, and why.
pub struct Gone {
    instance: Uuid,
    reason: String,
}

impl Transactional for InstanceEvents {
    type Change = Gone;

    fn parse(&self, message: &Incoming) -> Result<Gone, HandlerError> {
        match message.message_type.as_str() {
            InstanceTerminated::TYPE => {
                let envelope = message.envelope::<InstanceTerminated>()?;
                bus::consumer::require_version(envelope.version, InstanceTerminated::VERSION)?;
                Ok(Gone {
                    instance: envelope.data.instance_id,
                    reason: format!("instance_terminated: {}", envelope.data.reason),
                })
            }
            InstanceLaunchFailed::TYPE => {
                let envelope = message.envelope::<InstanceLaunchFailed>()?;
                bus::consumer::require_version(envelope.version, InstanceLaunchFailed::VERSION)?;
                tracing::warn!(instance = %envelope.data.instance_id, error = %envelope.data.error, "launch failed");
                Ok(Gone {
                    instance: envelope.data.instance_id,
                    reason: "launch_failed".into(),
                })
            }
            other => Err(HandlerError::Permanent(format!(
                "unexpected message type `{other}`"
            ))),
        }
    }

    fn apply(conn: &mut PgConnection, gone: &Gone) -> QueryResult<()> {
        fleet::mark_terminated(conn, gone.instance, &gone.reason).map(|_| ())
    }
}
