//! RabbitMQ for the platform: names and topology, a confirming publisher, the
//! transactional outbox and its relay, and the consumer runtime (manual ack,
//! retry with backoff through delay queues, `<queue>.dead` after the last
//! attempt, deduplication by message id). Connections are re-established with
//! backoff; `traceparent` travels in message headers.

pub mod broker;
pub mod consumer;
pub mod headers;
pub mod inbox;
pub mod outbox;
pub mod publisher;
pub mod schema;
pub mod topology;

pub use broker::{Broker, BrokerStatus};
pub use consumer::{ConsumerSpec, Handler, HandlerError, Incoming};
pub use outbox::{OutboxRelay, RelayHandle};
pub use publisher::Publisher;
pub use topology::Names;
