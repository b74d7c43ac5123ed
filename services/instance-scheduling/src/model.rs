//! The scheduler's vocabulary: states as types, and the values clients
//! and agents send, parsed once at the boundary.

use chrono::{DateTime, Utc};
use domain::text_enum;
use serde::Serialize;
use std::fmt;
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// Defines a text newtype whose `parse` checks it once.
macro_rules! checked_text {
    ($(#[$meta:meta])* $name:ident, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(raw).map_err(InvalidValue)?;
                Ok(Self(raw.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn name_like(raw: &str, what: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&raw.len())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be a {what} of 1 to 64 lowercase letters, digits, '-', '_' or '.'"
        ))
    }
}

checked_text!(
    /// A region name: `local`, `eu-west-1`.
    Region,
    |raw| name_like(raw, "region name")
);
checked_text!(
    /// What the client will run on the instance (an application name).
    App,
    |raw| name_like(raw, "name")
);
checked_text!(
    /// Where clients reach an instance's agent: `host:port`.
    Address,
    |raw| {
        let Some((host, port)) = raw.rsplit_once(':') else {
            return Err("must be host:port".into());
        };
        let host_ok = !host.is_empty()
            && raw.len() <= 255
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
        match port.parse::<u16>() {
            Ok(port) if port > 0 && host_ok => Ok(()),
            _ => Err("must be host:port with a port of 1 to 65535".into()),
        }
    }
);
checked_text!(
    /// Which provider runs an instance: `process`, `docker`, `manual`.
    Provider,
    |raw| name_like(raw, "provider name")
);

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
    fn names_and_addresses_are_checked_once() {
        assert!(Region::parse("eu-west-1").is_ok());
        assert!(Region::parse("").is_err());
        assert!(Region::parse("EU").is_err());
        assert!(Region::parse(&"a".repeat(65)).is_err());
        assert!(Address::parse("127.0.0.1:9100").is_ok());
        assert!(Address::parse("host.internal:80").is_ok());
        assert!(Address::parse("127.0.0.1").is_err());
        assert!(Address::parse("127.0.0.1:0").is_err());
        assert!(Address::parse("127.0.0.1:99999").is_err());
        assert!(Address::parse("a b:80").is_err());
        assert_eq!("spread".parse::<Strategy>(), Ok(Strategy::Spread));
        assert!("fastest".parse::<Strategy>().is_err());
        assert!(SessionStatus::Connected.is_live());
        assert!(!SessionStatus::Expired.is_live());
    }
}
