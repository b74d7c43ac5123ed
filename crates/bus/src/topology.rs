//! Exchange and queue names, and the topology a service declares.
//!
//! bus knows the platform's two exchanges (`events`, `jobs`) and nothing of
//! any service's queues: each service builds a [`Topology`] of the queues
//! it owns and their bindings (and of the job queues it sends to, so that
//! no job is unroutable before its worker first starts), exports it, and
//! the outbox relay declares it on every connect. A consumer declares its
//! own queue from its [`crate::ConsumerSpec`] as well.
//!
//! A prefix (`AMQP_PREFIX`, empty by default) lets tests, or several
//! environments on one broker, use disjoint names.

use crate::consumer::ConsumerSpec;
use domain::messages::{Contract, Route};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

/// Topic exchange for domain events; routing key = event type.
pub const EVENTS: &str = "events";
/// Direct exchange for jobs; routing key = queue name.
pub const JOBS: &str = "jobs";

/// How a queue is shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueKind {
    /// Durable and shared by every replica: each message is handled by
    /// one of them, at least once (ack after the work, retries through
    /// delay queues, `<queue>.dead` after the last attempt).
    Work,
    /// One per replica (`<queue>.<replica>`), exclusive and deleted with
    /// its connection, for fan-out: every replica gets every message. At
    /// most once: a failed message is logged, never retried or parked. It
    /// is declared again, with its bindings, whenever the consumer
    /// reconnects.
    PerReplica { replica: String },
}

/// An exchange a service needs besides `events` and `jobs`.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
}

/// A durable work queue and what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkQueue {
    pub name: String,
    /// `(logical exchange, routing key)`.
    pub bindings: Vec<(String, String)>,
    /// For a queue this service consumes: the delays of its retry queues
    /// (its `.dead` queue comes with them). `None` for a queue it only
    /// sends to, whose consumer declares those itself.
    pub retries_ms: Option<Vec<u64>>,
}

/// What a service declares on the broker: extra exchanges and its work
/// queues with their bindings.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    exchanges: Vec<Exchange>,
    queues: Vec<WorkQueue>,
}

impl Topology {
    pub fn new() -> Self {
        Self::default()
    }

    /// An exchange of the service's own (`chat.live`, say).
    pub fn exchange(mut self, name: &str, kind: ExchangeKind) -> Self {
        self.exchanges.push(Exchange {
            name: name.to_string(),
            kind,
        });
        self
    }

    /// The queue a consumer of this service reads, with its bindings and
    /// its delay and dead queues. A per-replica queue is left to its
    /// consumer, which alone knows the replica.
    pub fn consumer(mut self, spec: &ConsumerSpec) -> Self {
        if spec.kind == QueueKind::Work {
            self.queues.push(WorkQueue {
                name: spec.queue.clone(),
                bindings: spec.bindings.clone(),
                retries_ms: Some(spec.delays_ms()),
            });
        }
        self.exchanges.extend(spec.exchanges.iter().cloned());
        self
    }

    /// The job queue that `T` is sent to, bound to `jobs`: declared by the
    /// sender too, so a job waits for its worker even before the worker
    /// has ever started.
    pub fn sends_jobs<T: Contract>(self) -> Self {
        match T::ROUTE {
            Route::Job { queue } => self.job_queue(queue),
            Route::Event => self,
        }
    }

    /// The job queue `queue`, bound to `jobs` by its own name.
    pub fn job_queue(mut self, queue: &str) -> Self {
        if !self.queues.iter().any(|q| q.name == queue) {
            self.queues.push(WorkQueue {
                name: queue.to_string(),
                bindings: vec![(JOBS.to_string(), queue.to_string())],
                retries_ms: None,
            });
        }
        self
    }

    pub fn queues(&self) -> &[WorkQueue] {
        &self.queues
    }

    pub fn exchanges(&self) -> &[Exchange] {
        &self.exchanges
    }

    /// Connects to `broker` and declares this topology: what `<service>
    /// migrate` does, so that queues exist before any service publishes.
    pub async fn declare_on(&self, broker: &crate::Broker) -> lapin::Result<()> {
        let connection = broker.connect().await?;
        let channel = connection.create_channel().await?;
        let declared = self.declare(&channel, &broker.names).await;
        crate::broker::close(connection, "topology declared").await;
        declared
    }

    /// Declares `events`, `jobs`, the extra exchanges and every queue with
    /// its bindings (and delay and dead queues). Idempotent.
    pub async fn declare(&self, channel: &Channel, names: &Names) -> lapin::Result<()> {
        declare_exchanges(channel, names, &self.exchanges).await?;
        for queue in &self.queues {
            declare_work_queue(channel, names, queue).await?;
        }
        Ok(())
    }
}

fn durable() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

/// `events` and `jobs`, then `extra`.
pub(crate) async fn declare_exchanges(
    channel: &Channel,
    names: &Names,
    extra: &[Exchange],
) -> lapin::Result<()> {
    let platform = [(EVENTS, ExchangeKind::Topic), (JOBS, ExchangeKind::Direct)];
    for (name, kind) in platform {
        channel
            .exchange_declare(
                &names.physical(name),
                kind,
                durable(),
                FieldTable::default(),
            )
            .await?;
    }
    for exchange in extra {
        channel
            .exchange_declare(
                &names.physical(&exchange.name),
                exchange.kind.clone(),
                durable(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// A durable queue, its bindings, and (when it has retry delays) its delay
/// and dead queues.
pub(crate) async fn declare_work_queue(
    channel: &Channel,
    names: &Names,
    queue: &WorkQueue,
) -> lapin::Result<()> {
    let physical = names.physical(&queue.name);
    channel
        .queue_declare(&physical, durable_queue(), FieldTable::default())
        .await?;
    bind(channel, names, &physical, &queue.bindings).await?;
    if let Some(delays) = &queue.retries_ms {
        declare_retry_and_dead(channel, names, &queue.name, delays).await?;
    }
    Ok(())
}

pub(crate) async fn bind(
    channel: &Channel,
    names: &Names,
    physical_queue: &str,
    bindings: &[(String, String)],
) -> lapin::Result<()> {
    for (exchange, routing_key) in bindings {
        channel
            .queue_bind(
                physical_queue,
                &names.physical(exchange),
                routing_key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The broker name of a logical exchange or queue.
    pub fn physical(&self, logical: &str) -> String {
        format!("{}{}", self.prefix, logical)
    }

    pub fn dead_queue(&self, queue: &str) -> String {
        self.physical(&format!("{queue}.dead"))
    }

    pub fn retry_queue(&self, queue: &str, delay_ms: u64) -> String {
        self.physical(&format!("{queue}.retry.{delay_ms}ms"))
    }

    /// The broker name of one replica's queue of a fan-out.
    pub fn replica_queue(&self, queue: &str, replica: &str) -> String {
        self.physical(&format!("{queue}.{replica}"))
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares `<queue>.dead` and one delay queue per retry delay. A delay queue
/// holds messages for its TTL, then dead-letters them back to `<queue>`
/// through the default exchange. One queue per delay (not a per-message TTL)
/// keeps a long delay from holding up a short one.
pub(crate) async fn declare_retry_and_dead(
    channel: &Channel,
    names: &Names,
    queue: &str,
    delays_ms: &[u64],
) -> lapin::Result<()> {
    channel
        .queue_declare(
            &names.dead_queue(queue),
            durable_queue(),
            FieldTable::default(),
        )
        .await?;
    for &delay in delays_ms {
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(delay as i64));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from("")),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(LongString::from(names.physical(queue))),
        );
        channel
            .queue_declare(&names.retry_queue(queue, delay), durable_queue(), args)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_every_name() {
        let names = Names::new("t1.");
        assert_eq!(names.physical("events"), "t1.events");
        assert_eq!(names.dead_queue("email"), "t1.email.dead");
        assert_eq!(names.retry_queue("email", 500), "t1.email.retry.500ms");
        assert_eq!(Names::default().physical("jobs"), "jobs");
    }
}
