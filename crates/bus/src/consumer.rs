//! The consumer runtime. A consumer is a [`Handler`] plus a [`ConsumerSpec`]
//! (queue, bindings, prefetch, retry delays). Each delivery is acked only
//! after its handler finished; a failure is re-published to the next delay
//! queue (after its TTL it returns to the queue), and after the last attempt,
//! or at once for a permanent failure, to `<queue>.dead` with the error in
//! its headers. The original is acked only once that publish is confirmed:
//! nothing is dropped silently.

use crate::broker::{Backoff, Broker};
use crate::headers::{self, StringHeaders};
use crate::publisher::{OutgoingMessage, Publisher};
use crate::topology::{self, Exchange, QueueKind};
use domain::messages::Envelope;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use platform::Shutdown;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::Instrument;

/// A message as a handler sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub message_id: String,
    pub message_type: String,
    pub body: Vec<u8>,
    /// 1 for the first delivery.
    pub attempt: u32,
    /// Sent back from `<queue>.dead` by an operator.
    pub requeued: bool,
}

impl Incoming {
    /// Parses the envelope; a body that does not parse is a permanent failure.
    pub fn envelope<T: DeserializeOwned>(&self) -> Result<Envelope<T>, HandlerError> {
        serde_json::from_slice(&self.body)
            .map_err(|err| HandlerError::Permanent(format!("malformed message: {err}")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth another try later (a dependency was down, a timeout).
    #[error("{0}")]
    Transient(String),
    /// Will never succeed (malformed, unknown version): straight to `.dead`.
    #[error("{0}")]
    Permanent(String),
}

/// A permanent failure unless the envelope has the version this build reads.
pub fn require_version(version: u32, expected: u32) -> Result<(), HandlerError> {
    if version == expected {
        Ok(())
    } else {
        Err(HandlerError::Permanent(format!(
            "unsupported version {version} (expected {expected})"
        )))
    }
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, message: Incoming) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Handles the deliveries that were waiting together (at most
    /// [`ConsumerSpec::batch`]), one result per message in the same order.
    /// The default handles them one after another; a handler that can do
    /// the work of many for the price of one (one database commit for the
    /// lot, see [`crate::inbox::Inboxed`]) overrides it.
    fn handle_batch(
        &self,
        messages: Vec<Incoming>,
    ) -> impl Future<Output = Vec<Result<(), HandlerError>>> + Send {
        async move {
            let mut results = Vec::with_capacity(messages.len());
            for message in messages {
                results.push(self.handle(message).await);
            }
            results
        }
    }
}

/// Counters and timings of a consumer, registered on the service's registry.
#[derive(Clone)]
pub struct ConsumerMetrics {
    /// outcome: `processed`, `retried`, `dead_lettered`, `requeued`.
    messages: prometheus::IntCounterVec,
    duration: prometheus::HistogramVec,
}

impl ConsumerMetrics {
    pub fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let messages = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "amqp_messages_total",
                "Messages consumed, by queue and outcome",
            ),
            &["queue", "outcome"],
        )?;
        let duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "amqp_handler_duration_seconds",
                "Time spent in handlers",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
            &["queue"],
        )?;
        registry.register(Box::new(messages.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { messages, duration })
    }

    fn count(&self, queue: &str, outcome: &str) {
        self.messages.with_label_values(&[queue, outcome]).inc();
    }
}

impl std::fmt::Debug for ConsumerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsumerMetrics")
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Logical queue name (prefixed on the broker by `Names`).
    pub queue: String,
    /// A work queue shared by the replicas, or a queue per replica.
    pub kind: QueueKind,
    /// `(logical exchange, routing key)` pairs the queue is bound to.
    pub bindings: Vec<(String, String)>,
    /// Exchanges of the service's own that the bindings use.
    pub exchanges: Vec<Exchange>,
    pub prefetch: u16,
    /// Handler calls running at once (at most `prefetch`).
    pub concurrency: usize,
    /// Most deliveries handed to one [`Handler::handle_batch`] call. Only
    /// deliveries already waiting are batched: a lone message is never held
    /// back for company.
    pub batch: usize,
    /// Delay before each retry; attempts = delays + 1.
    pub retry_delays: Vec<Duration>,
    pub metrics: Option<ConsumerMetrics>,
    /// Told each time the consumer has (re)connected and consumes again.
    pub on_connected: Option<Arc<tokio::sync::Notify>>,
}

impl ConsumerSpec {
    /// A durable work queue: each message handled once by some replica.
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            kind: QueueKind::Work,
            bindings: Vec::new(),
            exchanges: Vec::new(),
            prefetch: 16,
            concurrency: 16,
            batch: 1,
            metrics: None,
            on_connected: None,
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(10),
                Duration::from_secs(60),
                Duration::from_secs(300),
            ],
        }
    }

    /// A fan-out queue of this replica's own (`replica` tells the replicas
    /// apart; a uuid per process): every replica gets every message, at
    /// most once, and the queue goes with the replica.
    pub fn per_replica(queue: impl Into<String>, replica: impl Into<String>) -> Self {
        Self {
            kind: QueueKind::PerReplica {
                replica: replica.into(),
            },
            retry_delays: Vec::new(),
            ..Self::new(queue)
        }
    }

    /// Declares an exchange of the service's own before binding to it.
    pub fn exchange(mut self, name: &str, kind: lapin::ExchangeKind) -> Self {
        self.exchanges.push(Exchange {
            name: name.to_string(),
            kind,
        });
        self
    }

    /// The queue's name on the broker.
    pub fn physical_queue(&self, names: &topology::Names) -> String {
        match &self.kind {
            QueueKind::Work => names.physical(&self.queue),
            QueueKind::PerReplica { replica } => names.replica_queue(&self.queue, replica),
        }
    }

    pub fn bind(mut self, exchange: &str, routing_key: &str) -> Self {
        self.bindings
            .push((exchange.to_string(), routing_key.to_string()));
        self
    }

    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    pub fn metrics(mut self, metrics: ConsumerMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// `notify` is told every time the consumer connects and consumes: for
    /// a per-replica queue, what was published while it was away is gone,
    /// and the owner may want to make up for it.
    pub fn on_connected(mut self, notify: Arc<tokio::sync::Notify>) -> Self {
        self.on_connected = Some(notify);
        self
    }

    pub fn retry_delays(mut self, delays: Vec<Duration>) -> Self {
        self.retry_delays = delays;
        self
    }

    pub fn max_attempts(&self) -> u32 {
        self.retry_delays.len() as u32 + 1
    }

    pub(crate) fn delays_ms(&self) -> Vec<u64> {
        self.retry_delays
            .iter()
            .map(|d| d.as_millis().max(1) as u64)
            .collect()
    }
}

/// Consumes `spec.queue` with `handler` until `shutdown`, then lets in-flight
/// deliveries finish (and be acked) before returning.
pub async fn run<H: Handler>(
    broker: Broker,
    spec: ConsumerSpec,
    handler: Arc<H>,
    shutdown: Shutdown,
) {
    let link = broker.status.link(format!("consumer of {}", spec.queue));
    let mut backoff = Backoff::default();
    while !shutdown.is_triggered() {
        match consume_while_connected(&broker, &spec, &handler, &shutdown, &mut backoff, &link)
            .await
        {
            Ok(()) => break,
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(queue = %spec.queue, error = %err, retry_in_ms = delay.as_millis() as u64, "consumer interrupted");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait() => break,
                }
            }
        }
    }
}

async fn consume_while_connected<H: Handler>(
    broker: &Broker,
    spec: &ConsumerSpec,
    handler: &Arc<H>,
    shutdown: &Shutdown,
    backoff: &mut Backoff,
    link: &crate::broker::BrokerLink,
) -> lapin::Result<()> {
    let names = &broker.names;
    let connection = broker.connect().await?;
    let channel = connection.create_channel().await?;
    let publisher = Publisher::open(&connection).await?;
    let queue = declare_own_queue(&channel, names, spec).await?;
    channel
        .basic_qos(spec.prefetch, BasicQosOptions::default())
        .await?;
    let tag = format!("{}-{}", spec.queue, uuid::Uuid::new_v4());
    let mut deliveries = channel
        .basic_consume(
            &queue,
            &tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    backoff.reset();
    link.set(true);
    tracing::info!(queue = %queue, "consumer started");
    if let Some(notify) = &spec.on_connected {
        notify.notify_one();
    }

    let context = Arc::new(DeliveryContext {
        publisher,
        names: names.clone(),
        spec: spec.clone(),
    });
    let mut in_flight = JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(
        spec.concurrency.min(usize::from(spec.prefetch)).max(1),
    ));
    // Deliveries taken from lapin but not yet handed to a handler. They are
    // taken as they come, so that whatever is waiting when a handler slot
    // frees up goes to it as one batch.
    let mut waiting: VecDeque<Delivery> = VecDeque::new();
    let outcome = loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => break Ok(()),
            next = deliveries.next() => match next {
                Some(Ok(delivery)) => waiting.push_back(delivery),
                Some(Err(err)) => break Err(err),
                None => break Err(lapin::Error::InvalidChannelState(channel.status().state())),
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            permit = permits.clone().acquire_owned(), if !waiting.is_empty() => {
                let Ok(permit) = permit else { break Ok(()) };
                let batch: Vec<Delivery> = waiting.drain(..waiting.len().min(spec.batch)).collect();
                let handler = handler.clone();
                let context = context.clone();
                in_flight.spawn(async move {
                    let _permit = permit;
                    context.process(batch, handler.as_ref()).await
                });
            }
        }
    };
    // Deliveries not started go back to the queue now; what was started
    // finishes, and its ack (or requeue) still needs this channel. Keep
    // draining the delivery stream meanwhile, handing anything new straight
    // back.
    for delivery in waiting.drain(..) {
        let _ = delivery.nack(REQUEUE).await;
    }
    while !in_flight.is_empty() {
        tokio::select! {
            _ = in_flight.join_next() => {}
            next = deliveries.next() => match next {
                Some(Ok(delivery)) => {
                    let _ = delivery.nack(REQUEUE).await;
                }
                _ => {
                    while in_flight.join_next().await.is_some() {}
                }
            },
        }
    }
    link.set(false);
    if outcome.is_ok() {
        let _ = channel.close(200, "shutting down").await;
        crate::broker::close(connection, "shutting down").await;
    }
    outcome
}

/// Declares what this consumer reads: its work queue (with bindings, delay
/// and dead queues) or this replica's exclusive queue and its bindings,
/// anew on every connect. Returns the queue's broker name.
async fn declare_own_queue(
    channel: &lapin::Channel,
    names: &topology::Names,
    spec: &ConsumerSpec,
) -> lapin::Result<String> {
    topology::declare_exchanges(channel, names, &spec.exchanges).await?;
    let queue = spec.physical_queue(names);
    match &spec.kind {
        QueueKind::Work => {
            let work = topology::WorkQueue {
                name: spec.queue.clone(),
                bindings: spec.bindings.clone(),
                retries_ms: Some(spec.delays_ms()),
            };
            topology::declare_work_queue(channel, names, &work).await?;
        }
        QueueKind::PerReplica { .. } => {
            let options = lapin::options::QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            };
            channel
                .queue_declare(&queue, options, FieldTable::default())
                .await?;
            topology::bind(channel, names, &queue, &spec.bindings).await?;
        }
    }
    Ok(queue)
}

const REQUEUE: BasicNackOptions = BasicNackOptions {
    multiple: false,
    requeue: true,
};

/// A delivery on its way through a handler.
struct Received {
    delivery: Delivery,
    span: tracing::Span,
    attempt: u32,
    /// Messages without an id cannot be deduplicated: they are dead-lettered
    /// without reaching the handler.
    has_id: bool,
}

fn message_id(properties: &lapin::BasicProperties) -> String {
    properties
        .message_id()
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_default()
}

fn message_type(properties: &lapin::BasicProperties) -> String {
    properties
        .kind()
        .as_ref()
        .map(|kind| kind.to_string())
        .unwrap_or_default()
}

/// The result of a batch of one: for a handler whose `handle` is its
/// `handle_batch` with one message.
pub fn only(mut results: Vec<Result<(), HandlerError>>) -> Result<(), HandlerError> {
    results.pop().unwrap_or_else(|| {
        Err(HandlerError::Transient(
            "the handler returned no result".into(),
        ))
    })
}

fn incoming(delivery: &Delivery) -> Incoming {
    let properties = &delivery.properties;
    let table = properties.headers().as_ref();
    Incoming {
        message_id: message_id(properties),
        message_type: message_type(properties),
        body: delivery.data.clone(),
        attempt: headers::attempt(table),
        requeued: table
            .and_then(|t| t.inner().get(headers::REQUEUED))
            .and_then(headers::as_string)
            .is_some_and(|v| v == "true"),
    }
}

struct DeliveryContext {
    publisher: Publisher,
    names: topology::Names,
    spec: ConsumerSpec,
}

impl DeliveryContext {
    /// Hands `batch` to the handler (one message alone to
    /// [`Handler::handle`]), then settles each delivery by its result.
    async fn process<H: Handler>(&self, batch: Vec<Delivery>, handler: &H) {
        let mut received = Vec::with_capacity(batch.len());
        let mut messages = Vec::with_capacity(batch.len());
        for delivery in batch {
            let incoming = incoming(&delivery);
            let span = tracing::info_span!(
                "amqp.consume",
                otel.kind = "consumer",
                messaging.destination = %self.spec.queue,
                messaging.message_id = %incoming.message_id,
                message_type = %incoming.message_type,
                attempt = incoming.attempt,
            );
            let headers = StringHeaders::from_table(delivery.properties.headers().as_ref());
            platform::telemetry::set_parent_from(&span, &headers);
            let has_id = !incoming.message_id.is_empty();
            received.push(Received {
                delivery,
                span,
                attempt: incoming.attempt,
                has_id,
            });
            if has_id {
                messages.push(incoming);
            }
        }
        let started = std::time::Instant::now();
        let mut results = self.call(handler, messages, &received).await.into_iter();
        if let Some(metrics) = &self.spec.metrics {
            metrics
                .duration
                .with_label_values(&[self.spec.queue.as_str()])
                .observe(started.elapsed().as_secs_f64());
        }
        let mut done = Vec::with_capacity(received.len());
        for message in received {
            let result = if !message.has_id {
                Err(HandlerError::Permanent("message has no message_id".into()))
            } else {
                results.next().unwrap_or_else(|| {
                    Err(HandlerError::Transient(
                        "the handler returned no result".into(),
                    ))
                })
            };
            match result {
                Ok(()) => done.push(message),
                Err(err) => self.settle_failure(message, err).await,
            }
        }
        self.ack_all(done).await;
    }

    /// Acks handled deliveries all at once: lapin resolves an ack only once
    /// its frame is written, and one at a time that is a thread round trip
    /// each.
    async fn ack_all(&self, done: Vec<Received>) {
        let acks = done
            .iter()
            .map(|message| message.delivery.ack(BasicAckOptions::default()));
        let outcomes = futures_util::future::join_all(acks).await;
        for (message, outcome) in done.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    if let Some(metrics) = &self.spec.metrics {
                        metrics.count(&self.spec.queue, "processed");
                    }
                }
                Err(err) => message.span.in_scope(
                    || tracing::warn!(error = %err, "ack failed; the broker will redeliver"),
                ),
            }
        }
    }

    async fn call<H: Handler>(
        &self,
        handler: &H,
        mut messages: Vec<Incoming>,
        received: &[Received],
    ) -> Vec<Result<(), HandlerError>> {
        match messages.len() {
            0 => Vec::new(),
            1 => {
                let span = received
                    .iter()
                    .find(|r| r.has_id)
                    .map(|r| r.span.clone())
                    .unwrap_or_else(tracing::Span::none);
                let message = messages.remove(0);
                vec![handler.handle(message).instrument(span).await]
            }
            count => {
                let span = tracing::info_span!(
                    "amqp.consume_batch",
                    otel.kind = "consumer",
                    messaging.destination = %self.spec.queue,
                    messaging.batch.message_count = count,
                );
                for message in received.iter().filter(|r| r.has_id) {
                    let headers =
                        StringHeaders::from_table(message.delivery.properties.headers().as_ref());
                    platform::telemetry::link_from(&span, &headers);
                }
                handler.handle_batch(messages).instrument(span).await
            }
        }
    }

    /// Re-publishes a failed delivery to its delay queue, or to `.dead`
    /// after the last attempt or for a permanent failure, and acks it once
    /// that is confirmed; requeues it if it is not.
    async fn settle_failure(&self, message: Received, error: HandlerError) {
        let Received {
            delivery,
            span,
            attempt,
            ..
        } = message;
        let metrics = self.spec.metrics.as_ref();
        if self.spec.kind != QueueKind::Work {
            // At most once: the database is the truth, the message a hint.
            span.in_scope(|| tracing::warn!(reason = %error, "message dropped (at most once)"));
            if let Some(metrics) = metrics {
                metrics.count(&self.spec.queue, "dropped");
            }
            if let Err(err) = delivery.ack(BasicAckOptions::default()).await {
                span.in_scope(|| tracing::warn!(error = %err, "ack failed"));
            }
            return;
        }
        let (outcome, settled) = match error {
            HandlerError::Transient(reason) if attempt < self.spec.max_attempts() => {
                span.in_scope(|| tracing::warn!(reason = %reason, "handler failed; will retry"));
                let delay = self.spec.delays_ms()[(attempt - 1) as usize];
                let target = self.names.retry_queue(&self.spec.queue, delay);
                let settled = self.republish(&delivery, &target, attempt + 1, None).await;
                ("retried", settled)
            }
            err => {
                span.in_scope(|| tracing::error!(reason = %err, "message dead-lettered"));
                let target = self.names.dead_queue(&self.spec.queue);
                let settled = self
                    .republish(&delivery, &target, attempt, Some(&err.to_string()))
                    .await;
                ("dead_lettered", settled)
            }
        };
        let acked = match settled {
            Ok(()) => {
                if let Some(metrics) = metrics {
                    metrics.count(&self.spec.queue, outcome);
                }
                delivery.ack(BasicAckOptions::default()).await
            }
            Err(err) => {
                if let Some(metrics) = metrics {
                    metrics.count(&self.spec.queue, "requeued");
                }
                span.in_scope(
                    || tracing::warn!(error = %err, "could not park the message; requeueing"),
                );
                delivery.nack(REQUEUE).await
            }
        };
        if let Err(err) = acked {
            span.in_scope(|| tracing::warn!(error = %err, "ack failed; the broker will redeliver"));
        }
    }

    /// Copies the delivery to `queue` (through the default exchange), with
    /// its attempt count and, for a dead letter, the reason.
    async fn republish(
        &self,
        delivery: &Delivery,
        queue: &str,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<(), crate::publisher::PublishError> {
        let mut table = delivery.properties.headers().clone().unwrap_or_default();
        table.insert(
            headers::ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(attempt)),
        );
        if let Some(error) = error {
            let reason: String = error.chars().take(2000).collect();
            table.insert(
                headers::ERROR.into(),
                AMQPValue::LongString(LongString::from(reason)),
            );
            table.insert(
                headers::ORIGINAL_QUEUE.into(),
                AMQPValue::LongString(LongString::from(self.names.physical(&self.spec.queue))),
            );
            table.insert(
                headers::FAILED_AT.into(),
                AMQPValue::LongString(LongString::from(chrono::Utc::now().to_rfc3339())),
            );
        }
        let properties = &delivery.properties;
        self.publisher
            .publish(&OutgoingMessage {
                exchange: String::new(),
                routing_key: queue.to_string(),
                message_id: message_id(properties),
                message_type: message_type(properties),
                payload: delivery.data.clone(),
                headers: table,
                mandatory: true,
            })
            .await
    }
}
