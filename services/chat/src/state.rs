//! What handlers and connections share, and how a committed change is
//! made known: room frames to every replica, the outbox relay woken, the
//! queue drained when capacity may have freed.

use crate::assignment::{self, Changes};
use crate::config::{PresenceTiming, WsLimits};
use crate::conversation::MessageWriter;
use crate::live::frames::{PresenceStatus, ServerFrame};
use crate::live::hub::Audience;
use crate::live::Live;
use crate::metrics::ChatMetrics;
use crate::model::{Message, Room};
use bus::RelayHandle;
use platform::db::{self, PgPool};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// One drain at a time per replica: asks that come while one runs are
/// folded into one more round of it, instead of each holding a database
/// connection while it waits for the queue's lock.
#[derive(Default)]
pub struct Drains {
    running: tokio::sync::Mutex<()>,
    again: AtomicBool,
}

#[derive(Clone)]
pub struct AppState {
    pub drains: Arc<Drains>,
    pub pool: PgPool,
    pub messages: MessageWriter,
    pub relay: RelayHandle,
    pub live: Live,
    pub metrics: ChatMetrics,
    pub limits: WsLimits,
    pub presence: PresenceTiming,
}

impl AppState {
    pub fn replica(&self) -> Uuid {
        self.live.replica
    }

    /// Announces a committed change, then assigns waiting rooms if it may
    /// have freed capacity. A drain that fails now is retried by the
    /// leader's periodic drain.
    pub async fn settle(&self, changes: Changes) {
        let drain = changes.queue_may_move;
        self.announce(changes);
        if drain {
            self.drain_queue().await;
        }
    }

    /// Assigns what waits, or has the drain already running here do it
    /// once more.
    pub async fn drain_queue(&self) {
        self.drains.again.store(true, Ordering::Release);
        loop {
            let Ok(running) = self.drains.running.try_lock() else {
                return;
            };
            while self.drains.again.swap(false, Ordering::AcqRel) {
                match db::run(&self.pool, |conn| {
                    assignment::drain(conn).map_err(db::DbError::from)
                })
                .await
                {
                    Ok(drained) => self.announce(drained),
                    Err(err) => {
                        tracing::warn!(error = %err, "draining the waiting queue failed; the leader retries");
                        return;
                    }
                }
            }
            drop(running);
            // An ask that came just as the last round ended is not lost.
            if !self.drains.again.load(Ordering::Acquire) {
                return;
            }
        }
    }

    pub fn announce(&self, changes: Changes) {
        for (trigger, outcome, reason) in &changes.decisions {
            self.metrics
                .decisions
                .with_label_values(&[trigger, outcome, reason])
                .inc();
        }
        if changes.events > 0 {
            self.relay.wake();
        }
        for room in &changes.rooms {
            self.announce_room(room);
        }
    }

    pub fn announce_room(&self, room: &Room) {
        let frame = ServerFrame::Room { room }.to_text();
        self.live.announce(
            Audience::RoomChange {
                room_id: room.id,
                visitor_id: room.visitor_id,
                assignee_id: room.assignee_id,
            },
            Some(room.id),
            None,
            frame,
        );
    }

    pub fn announce_message(&self, message: &Message) {
        let frame = ServerFrame::Message(message).to_text();
        self.live.announce(
            Audience::Room {
                room_id: message.room_id,
                except_user: None,
            },
            Some(message.room_id),
            Some(message.seq),
            frame,
        );
    }

    pub fn announce_presence(&self, staff_id: Uuid, online: bool) {
        let status = if online {
            PresenceStatus::Online
        } else {
            PresenceStatus::Offline
        };
        let frame = ServerFrame::Presence { staff_id, status }.to_text();
        self.live
            .announce(Audience::Presence { staff_id }, None, None, frame);
    }
}
