//! The WebSocket protocol: what clients send and what the server sends,
//! each a JSON object with a `type` and its fields at the top level.

use crate::model::{Message, Room};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// First frame of a connection, and again to renew an expiring token.
    Auth {
        token: String,
    },
    /// Replays what came after `after_seq` (none when absent), then streams.
    Subscribe {
        room_id: Uuid,
        after_seq: Option<i64>,
    },
    Unsubscribe {
        room_id: Uuid,
    },
    Send {
        room_id: Uuid,
        client_msg_id: String,
        body: String,
    },
    Typing {
        room_id: Uuid,
    },
    Read {
        room_id: Uuid,
        seq: i64,
    },
    Ping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Offline,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Message(&'a Message),
    Ack {
        client_msg_id: &'a str,
        seq: i64,
    },
    Typing {
        room_id: Uuid,
        user_id: Uuid,
    },
    Read {
        room_id: Uuid,
        user_id: Uuid,
        seq: i64,
    },
    Room {
        room: &'a Room,
    },
    Presence {
        staff_id: Uuid,
        status: PresenceStatus,
    },
    Error {
        code: &'a str,
        message: &'a str,
    },
    Pong,
}

impl ServerFrame<'_> {
    pub fn to_text(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string
        // keys, no foreign Serialize impls.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"unserializable frame"}"#.to_string()
        })
    }
}

/// Error codes of `error` frames.
pub mod codes {
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const INVALID: &str = "invalid";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const ROOM_CLOSED: &str = "room_closed";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const TOO_MANY_SUBSCRIPTIONS: &str = "too_many_subscriptions";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const INTERNAL: &str = "internal";
}

/// Close codes the server uses.
pub mod close {
    /// The server is shutting down; reconnect elsewhere.
    pub const GOING_AWAY: u16 = 1001;
    /// Flooding past the rate limit, or a broken WebSocket frame.
    pub const POLICY: u16 = 1008;
    /// A frame over `WS_MAX_FRAME_BYTES`.
    pub const TOO_BIG: u16 = 1009;
    /// No valid `auth` frame in time, a bad token, or an expired one.
    pub const UNAUTHORIZED: u16 = 4401;
    /// Idle past `WS_IDLE_TIMEOUT_SECS`.
    pub const IDLE: u16 = 4408;
    /// The send queue overflowed: the client does not read fast enough.
    pub const SLOW_READER: u16 = 4429;
}
