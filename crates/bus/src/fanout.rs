//! Best-effort publishing for live fan-out (chat's `chat.live`): messages
//! whose durable copy is already in a database, where a lost message costs
//! a reader a fetch and never a loss. Publishing never waits on the broker:
//! [`FanoutPublisher::publish`] queues the message for a background task
//! that sends without publisher confirms, non-persistent, and drops what it
//! cannot send (counted) while the broker is away.

use crate::broker::{Backoff, Broker};
use crate::topology::{self, Exchange};
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use platform::Shutdown;
use tokio::sync::mpsc;

/// Most messages handed to lapin before waiting for their writes.
const BATCH: usize = 256;

struct Outgoing {
    routing_key: String,
    payload: Vec<u8>,
}

/// Queues messages for an exchange of the service's own.
#[derive(Clone)]
pub struct FanoutPublisher {
    queue: mpsc::Sender<Outgoing>,
    dropped: prometheus::IntCounter,
}

/// The task that sends what [`FanoutPublisher`] queued; run it with the
/// service's background tasks.
pub struct FanoutTask {
    broker: Broker,
    exchange: Exchange,
    queue: mpsc::Receiver<Outgoing>,
    dropped: prometheus::IntCounter,
}

impl FanoutPublisher {
    /// A publisher to the logical `exchange` (declared on every connect),
    /// holding at most `capacity` messages while they wait for the wire;
    /// what it drops is counted in `dropped`.
    pub fn new(
        broker: Broker,
        exchange: Exchange,
        capacity: usize,
        dropped: prometheus::IntCounter,
    ) -> (Self, FanoutTask) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let publisher = Self {
            queue: sender,
            dropped: dropped.clone(),
        };
        let task = FanoutTask {
            broker,
            exchange,
            queue: receiver,
            dropped,
        };
        (publisher, task)
    }

    /// Queues `payload` for `routing_key`; `false` when it was dropped
    /// because the queue is full (the broker is slow or away).
    pub fn publish(&self, routing_key: String, payload: Vec<u8>) -> bool {
        let sent = self
            .queue
            .try_send(Outgoing {
                routing_key,
                payload,
            })
            .is_ok();
        if !sent {
            self.dropped.inc();
        }
        sent
    }

    /// Messages dropped so far, queued or not.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

impl FanoutTask {
    /// Sends until `shutdown`, reconnecting with backoff; while the broker
    /// is away, what arrives is dropped rather than kept.
    pub async fn run(mut self, shutdown: Shutdown) {
        let link = self.broker.status.link("live publisher");
        let mut backoff = Backoff::default();
        while !shutdown.is_triggered() {
            match self
                .send_while_connected(&shutdown, &link, &mut backoff)
                .await
            {
                Ok(()) => break,
                Err(err) => {
                    link.set(false);
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "live publisher interrupted");
                    let until = tokio::time::Instant::now() + delay;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => break,
                            _ = shutdown.wait() => return,
                            next = self.queue.recv() => match next {
                                Some(_) => { self.dropped.inc(); }
                                None => return,
                            },
                        }
                    }
                }
            }
        }
        link.set(false);
    }

    async fn send_while_connected(
        &mut self,
        shutdown: &Shutdown,
        link: &crate::BrokerLink,
        backoff: &mut Backoff,
    ) -> lapin::Result<()> {
        let connection = self.broker.connect().await?;
        let channel = connection.create_channel().await?;
        topology::declare_exchanges(
            &channel,
            &self.broker.names,
            std::slice::from_ref(&self.exchange),
        )
        .await?;
        let exchange = self.broker.names.physical(&self.exchange.name);
        backoff.reset();
        link.set(true);
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(1);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                count = self.queue.recv_many(&mut batch, BATCH) => {
                    if count == 0 {
                        break;
                    }
                    let sends = batch.iter().map(|message| {
                        channel.basic_publish(
                            &exchange,
                            &message.routing_key,
                            BasicPublishOptions::default(),
                            &message.payload,
                            // The consumer runtime refuses messages without an id.
                            properties
                                .clone()
                                .with_message_id(uuid::Uuid::new_v4().to_string().into()),
                        )
                    });
                    // Polled together, in order: one thread round trip for
                    // the batch instead of one per message.
                    let outcomes = futures_util::future::join_all(sends).await;
                    let failed = outcomes.iter().filter(|outcome| outcome.is_err()).count();
                    batch.clear();
                    if failed > 0 {
                        self.dropped.inc_by(failed as u64);
                        if let Some(Err(err)) = outcomes.into_iter().find(Result::is_err) {
                            return Err(err);
                        }
                    }
                }
            }
        }
        link.set(false);
        crate::broker::close(connection, "shutting down").await;
        Ok(())
    }
}
