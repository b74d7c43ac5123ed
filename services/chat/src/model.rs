//! Chat's vocabulary: room states and priorities as types, and the values
//! clients send, parsed once at the boundary.

use chrono::{DateTime, Utc};
use domain::text_enum;
use domain::Role;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

text_enum!(RoomStatus, "room status", [Waiting => "waiting", Active => "active", Closed => "closed"]);
text_enum!(Priority, "priority", [Low => "low", Normal => "normal", High => "high", Urgent => "urgent"]);
text_enum!(AuthorRole, "author role", [Visitor => "visitor", Staff => "staff"]);

impl Priority {
    /// The waiting queue's order: urgent (0) first, low (3) last.
    pub fn rank(&self) -> i16 {
        match self {
            Priority::Urgent => 0,
            Priority::High => 1,
            Priority::Normal => 2,
            Priority::Low => 3,
        }
    }
}

/// Staff and admins answer chats; both are "staff" to chat.
pub fn is_agent(roles: &[Role]) -> bool {
    roles.contains(&Role::Staff) || roles.contains(&Role::Admin)
}

/// A room, as stored and as clients see it.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    diesel::Queryable,
    diesel::QueryableByName,
    diesel::Selectable,
)]
#[diesel(table_name = crate::schema::rooms)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Room {
    pub id: Uuid,
    pub visitor_id: Uuid,
    pub assignee_id: Option<Uuid>,
    pub status: RoomStatus,
    pub priority: Priority,
    pub subject: Option<String>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The seq of the room's latest message; 0 before the first.
    pub last_seq: i64,
}

/// A message, as stored and as clients see it.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    diesel::Queryable,
    diesel::QueryableByName,
    diesel::Selectable,
)]
#[diesel(table_name = crate::schema::messages)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Message {
    pub id: Uuid,
    pub room_id: Uuid,
    /// 1, 2, 3... in each room, without gaps.
    pub seq: i64,
    pub author_id: Uuid,
    pub author_role: AuthorRole,
    pub body: String,
    pub client_msg_id: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

pub const MAX_BODY_CHARS: usize = 4000;
pub const MAX_SUBJECT_CHARS: usize = 200;
pub const MAX_NOTE_CHARS: usize = 2000;
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 200;

/// Text a person typed: line breaks and tabs are fine, other control
/// characters are not.
fn check_typed_text(text: &str) -> Result<(), InvalidValue> {
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(InvalidValue(
            "must not contain control characters".to_string(),
        ));
    }
    Ok(())
}

/// A message body: 1 to 4,000 characters, not only white space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(String);

impl Body {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.trim().is_empty() {
            return Err(InvalidValue("must not be empty".into()));
        }
        if raw.chars().count() > MAX_BODY_CHARS {
            return Err(InvalidValue(format!(
                "must be at most {MAX_BODY_CHARS} characters"
            )));
        }
        check_typed_text(raw)?;
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The client's id of a message, unique in its room: 1 to 200 visible
/// ASCII characters, like an `Idempotency-Key` (a UUID fits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.len() > MAX_CLIENT_MSG_ID_CHARS {
            return Err(InvalidValue(format!(
                "must be 1 to {MAX_CLIENT_MSG_ID_CHARS} characters"
            )));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue(
                "must be visible ASCII characters without spaces".into(),
            ));
        }
        Ok(Self(raw.to_string()))
    }

    /// A fresh id, for a send that came without one.
    pub fn generate() -> Self {
        Self(Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A room's subject: 1 to 200 characters on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(InvalidValue("must not be empty".into()));
        }
        if trimmed.chars().count() > MAX_SUBJECT_CHARS {
            return Err(InvalidValue(format!(
                "must be at most {MAX_SUBJECT_CHARS} characters"
            )));
        }
        domain::values::check_plain_text(trimmed, MAX_SUBJECT_CHARS)
            .map_err(|err| InvalidValue(err.0))?;
        Ok(Self(trimmed.to_string()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A staff member's note on a visitor: up to 2,000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note(String);

impl Note {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.chars().count() > MAX_NOTE_CHARS {
            return Err(InvalidValue(format!(
                "must be at most {MAX_NOTE_CHARS} characters"
            )));
        }
        check_typed_text(raw)?;
        Ok(Self(raw.to_string()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn states_round_trip_through_text() {
        for status in RoomStatus::ALL {
            assert_eq!(status.as_str().parse::<RoomStatus>().unwrap(), *status);
        }
        for priority in Priority::ALL {
            let json = serde_json::to_string(priority).unwrap();
            assert_eq!(json, format!("\"{priority}\""));
        }
        assert!("later".parse::<Priority>().is_err());
    }

    #[test]
    fn bodies_are_one_to_four_thousand_characters() {
        assert!(Body::parse("").is_err());
        assert!(Body::parse(" \n\t").is_err());
        assert!(Body::parse("line one\nline two").is_ok());
        assert!(Body::parse(&"é".repeat(4000)).is_ok());
        assert!(Body::parse(&"é".repeat(4001)).is_err());
        assert!(Body::parse("bell\u{7}").is_err());
    }

    #[test]
    fn client_ids_are_short_visible_ascii() {
        assert!(ClientMsgId::parse("c-1").is_ok());
        assert!(ClientMsgId::parse("").is_err());
        assert!(ClientMsgId::parse("has space").is_err());
        assert!(ClientMsgId::parse(&"x".repeat(201)).is_err());
    }
}
