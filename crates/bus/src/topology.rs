//! Exchange and queue names. A prefix (`AMQP_PREFIX`, empty by default) lets
//! tests, or several environments on one broker, use disjoint names.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

/// Topic exchange for domain events; routing key = event type.
pub const EVENTS: &str = "events";
/// Direct exchange for jobs; routing key = queue name.
pub const JOBS: &str = "jobs";
/// Queues that receive jobs; declared by publishers too, so no job is
/// unroutable before its worker first starts.
pub const JOB_QUEUES: [&str; 2] = ["email", "provisioning"];

/// Every service's event queue and what it is bound to. Each service
/// declares all of them when it connects, so an event published before its
/// consumer first started still finds its queue.
pub const EVENT_QUEUES: &[(&str, &[&str])] = &[
    (
        "auth.events",
        &[
            "account.roles_changed",
            "account.disabled",
            "account.enabled",
        ],
    ),
    (
        "accounts.events",
        &["user.registered", "user.email_verified"],
    ),
];

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
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares `events` and `jobs`, the job queues and every event queue.
pub async fn declare_publishing(channel: &Channel, names: &Names) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            &names.physical(EVENTS),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            &names.physical(JOBS),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    for queue in JOB_QUEUES {
        declare_bound_queue(channel, names, queue, JOBS, queue).await?;
    }
    for (queue, routing_keys) in EVENT_QUEUES {
        for key in *routing_keys {
            declare_bound_queue(channel, names, queue, EVENTS, key).await?;
        }
    }
    Ok(())
}

/// Declares a durable queue and binds it.
pub async fn declare_bound_queue(
    channel: &Channel,
    names: &Names,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> lapin::Result<()> {
    let physical = names.physical(queue);
    channel
        .queue_declare(&physical, durable_queue(), FieldTable::default())
        .await?;
    channel
        .queue_bind(
            &physical,
            &names.physical(exchange),
            routing_key,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Declares `<queue>.dead` and one delay queue per retry delay. A delay queue
/// holds messages for its TTL, then dead-letters them back to `<queue>`
/// through the default exchange. One queue per delay (not a per-message TTL)
/// keeps a long delay from holding up a short one.
pub async fn declare_retry_and_dead(
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
