//! Live delivery across replicas. A frame is handed at once to this
//! replica's connections and published to the topic exchange `chat.live`
//! (routing keys `room.<id>` and `presence.<staff id>`), from which every
//! other replica's one exclusive queue, bound to `room.*` and `presence.*`
//! once, receives it. Nothing is bound per room or per connection.
//!
//! Live delivery is at most once. Messages are in the database before
//! they are published, so a connection that sees a gap in a room's seqs
//! fetches the missing ones, and one that may have missed some (its
//! replica's consumer reconnected) checks the database.

pub mod frames;
pub mod hub;

use bus::fanout::FanoutPublisher;
use bus::{ConsumerSpec, HandlerError, Incoming};
use hub::{Audience, Delivery, Hub};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;
use uuid::Uuid;

pub const EXCHANGE: &str = "chat.live";
/// Each replica's queue is `chat.live.<replica id>`.
pub const QUEUE: &str = "chat.live";

pub fn exchange_kind() -> lapin::ExchangeKind {
    lapin::ExchangeKind::Topic
}

pub fn exchange() -> bus::topology::Exchange {
    bus::topology::Exchange {
        name: EXCHANGE.to_string(),
        kind: exchange_kind(),
    }
}

/// The replica's queue on `chat.live`.
pub fn spec(replica: Uuid) -> ConsumerSpec {
    ConsumerSpec::per_replica(QUEUE, replica.to_string())
        .exchange(EXCHANGE, exchange_kind())
        .bind(EXCHANGE, "room.*")
        .bind(EXCHANGE, "presence.*")
        .prefetch(512)
        .batch(256)
        // One at a time: frames of a room keep their order.
        .concurrency(1)
}

/// Where a frame on `chat.live` comes from and who it is for; the
/// envelope is these fields and `frame`.
#[derive(Serialize)]
struct Head {
    origin: Uuid,
    audience: Audience,
    room_id: Option<Uuid>,
    seq: Option<i64>,
}

/// What travels on `chat.live`.
#[derive(Deserialize)]
struct Envelope<'a> {
    origin: Uuid,
    audience: Audience,
    room_id: Option<Uuid>,
    seq: Option<i64>,
    #[serde(borrow)]
    frame: &'a RawValue,
}

/// Announces frames to every replica's connections.
#[derive(Clone)]
pub struct Live {
    pub replica: Uuid,
    pub hub: Arc<Hub>,
    publisher: FanoutPublisher,
}

impl Live {
    pub fn new(replica: Uuid, hub: Arc<Hub>, publisher: FanoutPublisher) -> Self {
        Self {
            replica,
            hub,
            publisher,
        }
    }

    /// Delivers `frame` (JSON text) here and publishes it for the others.
    pub fn announce(
        &self,
        audience: Audience,
        room_id: Option<Uuid>,
        seq: Option<i64>,
        frame: String,
    ) {
        let routing_key = match audience {
            Audience::Room { room_id, .. } | Audience::RoomChange { room_id, .. } => {
                format!("room.{room_id}")
            }
            Audience::Presence { staff_id } => format!("presence.{staff_id}"),
        };
        let head = Head {
            origin: self.replica,
            audience,
            room_id,
            seq,
        };
        if let Ok(mut payload) = serde_json::to_vec(&head) {
            // The frame is already JSON: spliced in as the last field, not
            // parsed and written again.
            payload.pop();
            payload.extend_from_slice(b",\"frame\":");
            payload.extend_from_slice(frame.as_bytes());
            payload.push(b'}');
            self.publisher.publish(routing_key, payload);
        }
        self.hub.deliver(
            audience,
            Delivery {
                room_id,
                seq,
                text: frame.into(),
            },
        );
    }
}

/// Hands what other replicas announced to this replica's connections.
pub struct LiveHandler {
    pub replica: Uuid,
    pub hub: Arc<Hub>,
}

impl LiveHandler {
    fn deliver(&self, message: &Incoming) -> Result<(), HandlerError> {
        let envelope: Envelope<'_> = serde_json::from_slice(&message.body)
            .map_err(|err| HandlerError::Permanent(format!("malformed live frame: {err}")))?;
        if envelope.origin != self.replica {
            self.hub.deliver(
                envelope.audience,
                Delivery {
                    room_id: envelope.room_id,
                    seq: envelope.seq,
                    text: envelope.frame.get().to_string().into(),
                },
            );
        }
        Ok(())
    }
}

impl bus::Handler for LiveHandler {
    async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        self.deliver(&message)
    }

    async fn handle_batch(&self, messages: Vec<Incoming>) -> Vec<Result<(), HandlerError>> {
        messages
            .iter()
            .map(|message| self.deliver(message))
            .collect()
    }
}
