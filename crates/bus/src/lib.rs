//! RabbitMQ for the platform: names and topology, a confirming publisher, the
//! transactional outbox and its relay, and the consumer runtime (manual ack,
//! retry with backoff through delay queues, `<queue>.dead` after the last
//! attempt, deduplication by message id). Connections are re-established with
//! backoff; `traceparent` travels in message headers.

pub mod broker;
pub mod consumer;
pub mod dead_letters;
pub mod fanout;
pub mod headers;
pub mod inbox;
pub mod outbox;
pub mod publisher;
pub mod schema;
pub mod topology;

pub use broker::{Broker, BrokerLink, BrokerStatus};
pub use consumer::{ConsumerSpec, Handler, HandlerError, Incoming};
pub use fanout::FanoutPublisher;
pub use outbox::{OutboxRelay, RelayHandle};
pub use publisher::Publisher;
pub use topology::{Names, QueueKind, Topology};

/// Readiness checks of a service with a database and a broker connection.
pub fn readiness(
    pool: platform::db::PgPool,
    status: BrokerStatus,
) -> platform::http::health::Readiness {
    platform::http::health::Readiness::new()
        .check("database", move || {
            let pool = pool.clone();
            Box::pin(async move { platform::db::ping(&pool).await })
        })
        .check("broker", move || {
            let outcome = status.check();
            Box::pin(async move { outcome })
        })
}

/// `<service> migrate`: applies the database migrations (`migrate_database`,
/// blocking) and declares the service's broker topology, so that a deploy
/// that migrates every service before starting any has every queue in
/// place before the first message is published. A broker that cannot be
/// reached is said in one line and is no failure: the service declares
/// its topology again whenever it connects.
pub async fn migrate_and_declare<F>(
    migrate_database: F,
    topology: Topology,
    broker: Broker,
) -> anyhow::Result<()>
where
    F: FnOnce() -> anyhow::Result<()> + Send + 'static,
{
    tokio::task::spawn_blocking(migrate_database).await??;
    println!("migrations applied");
    match topology.declare_on(&broker).await {
        Ok(()) => println!("broker topology declared"),
        Err(err) => eprintln!(
            "broker topology not declared ({err}); the service declares it when it starts"
        ),
    }
    Ok(())
}
