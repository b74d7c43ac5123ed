//! The scheduler's vocabulary: states as types, and the values clients
//! and agents send, parsed once at the boundary.

use chrono::{DateTime, Utc};
use domain::text_enum;
use serde::Serialize;
use uuid::Uuid;

text_enum!(InstanceStatus, "instance status", [
    Provisioning => "provisioning",
    Active => "active",
    Draining => "draining",
    Unresponsive => "unresponsive",
    Terminating => "terminating",
    Terminated => "terminated",
]);
text_enum!(SessionStatus, "session status", [
    Allocated => "allocated",
    Connected => "connected",
    Ended => "ended",
    Expired => "expired",
]);
text_enum!(Strategy, "allocation strategy", [Pack => "pack", Spread => "spread"]);

impl SessionStatus {
    /// Holding a slot.
    pub fn is_live(&self) -> bool {
        matches!(self, SessionStatus::Allocated | SessionStatus::Connected)
    }
}

pub use domain::instance::{Address, App, InvalidValue, Provider, Region};

/// An instance, as stored and as admins see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = crate::schema::instances)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Instance {
    pub id: Uuid,
    pub region: String,
    /// `host:port` of its host agent; none until it registers.
    pub address: Option<String>,
    pub provider: String,
    pub provider_ref: Option<String>,
    pub status: InstanceStatus,
    pub capacity: i32,
    /// Sessions allocated or connected on it.
    pub active_sessions: i32,
    pub cpu_pct: f32,
    pub mem_pct: f32,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
}

/// A session, as stored and as its owner sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = crate::schema::sessions)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Session {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub user_id: Uuid,
    pub app: Option<String>,
    pub status: SessionStatus,
    pub created_at: DateTime<Utc>,
    /// Until then the reservation may be used to connect.
    pub expires_at: DateTime<Utc>,
    pub connected_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_from_their_text() {
        assert_eq!("spread".parse::<Strategy>(), Ok(Strategy::Spread));
        assert!("fastest".parse::<Strategy>().is_err());
        assert!(SessionStatus::Connected.is_live());
        assert!(!SessionStatus::Expired.is_live());
    }
}
