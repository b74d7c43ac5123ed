//! Who may do what in a room, and posting messages: shared by the REST
//! routes and the WebSocket, so both answer alike.

use crate::model::{is_agent, AuthorRole, Body, ClientMsgId, Message, Room, RoomStatus};
use crate::store::messages::{self, Posting, Stored};
use crate::store::rooms;
use chrono::Utc;
use diesel::prelude::*;
use domain::Role;
use platform::db::batch::{BatchLimits, BatchedWrites};
use platform::db::{self, PgPool};
use platform::error::Error;
use platform::Problem;
use uuid::Uuid;

/// What a caller is to chat, from the roles of their token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// Staff or admin: every room.
    Agent(Uuid),
    /// Their own rooms only.
    Visitor(Uuid),
    /// A plain user: no room at all.
    Outsider(Uuid),
}

impl Party {
    pub fn of(user_id: Uuid, roles: &[Role]) -> Self {
        if is_agent(roles) {
            Party::Agent(user_id)
        } else if roles.contains(&Role::Visitor) {
            Party::Visitor(user_id)
        } else {
            Party::Outsider(user_id)
        }
    }

    pub fn user_id(&self) -> Uuid {
        match self {
            Party::Agent(id) | Party::Visitor(id) | Party::Outsider(id) => *id,
        }
    }

    pub fn is_agent(&self) -> bool {
        matches!(self, Party::Agent(_))
    }

    /// 403 for those who see no rooms.
    pub fn require_rooms(&self) -> Result<(), Problem> {
        match self {
            Party::Outsider(_) => Err(Problem::forbidden("chat rooms are for visitors and staff")),
            _ => Ok(()),
        }
    }

    /// 403 unless staff or admin.
    pub fn require_agent(&self) -> Result<Uuid, Problem> {
        match self {
            Party::Agent(id) => Ok(*id),
            _ => Err(Problem::forbidden("requires the staff role")),
        }
    }

    /// Whether the room is within reach. A visitor learns nothing of
    /// another visitor's room: it is "no such room" like one that does
    /// not exist.
    pub fn may_see(&self, room: &Room) -> bool {
        match self {
            Party::Agent(_) => true,
            Party::Visitor(id) => room.visitor_id == *id,
            Party::Outsider(_) => false,
        }
    }

    fn author_role(&self) -> Result<AuthorRole, Problem> {
        match self {
            Party::Agent(_) => Ok(AuthorRole::Staff),
            Party::Visitor(_) => Ok(AuthorRole::Visitor),
            Party::Outsider(_) => Err(Problem::forbidden("chat rooms are for visitors and staff")),
        }
    }
}

pub fn no_such_room() -> Problem {
    Problem::not_found("no such room")
}

/// The room if the party may see it: 403 for outsiders, 404 for a room
/// that does not exist or is out of reach.
pub fn visible_room(conn: &mut PgConnection, party: Party, room_id: Uuid) -> Result<Room, Error> {
    party.require_rooms()?;
    match rooms::find(conn, room_id)? {
        Some(room) if party.may_see(&room) => Ok(room),
        _ => Err(no_such_room().into()),
    }
}

/// Stores messages with the others arriving at the same moment: a batch
/// per transaction (one commit for all of them).
pub type MessageWriter = BatchedWrites<Posting, Option<Stored>>;

pub fn message_writer(pool: PgPool) -> MessageWriter {
    BatchedWrites::start(pool, BatchLimits::default(), messages::store_batch)
}

/// Posts a message as `party`: stored with its room's next seq, or the one
/// stored before under its client id. Most go in a batch; one the batch
/// leaves (its room busy in another transaction, closed, out of reach, or
/// a retry) is settled on its own.
pub async fn post(
    writer: &MessageWriter,
    pool: &PgPool,
    party: Party,
    room_id: Uuid,
    client_msg_id: &ClientMsgId,
    body: &Body,
) -> Result<Stored, Error> {
    let author_role = party.author_role()?;
    let only_visitor = match party {
        Party::Visitor(id) => Some(id),
        _ => None,
    };
    let posting = Posting {
        row: Message {
            room_id,
            seq: 0,
            id: Uuid::now_v7(),
            author_id: party.user_id(),
            author_role,
            body: body.as_str().to_string(),
            client_msg_id: client_msg_id.as_str().to_string(),
            created_at: Utc::now(),
        },
        only_visitor,
    };
    if let Some(stored) = writer.apply(posting.clone()).await? {
        return Ok(stored);
    }
    db::run(pool, move |conn| post_alone(conn, party, &posting)).await
}

fn post_alone(conn: &mut PgConnection, party: Party, posting: &Posting) -> Result<Stored, Error> {
    let room_id = posting.row.room_id;
    match messages::store(conn, &posting.row, posting.only_visitor) {
        Ok(Some(stored)) => {
            if !stored.created {
                // Only someone who may see the room learns of its messages.
                visible_room(conn, party, room_id)?;
            }
            Ok(stored)
        }
        Ok(None) => {
            // Nothing was taken: the room is closed, out of reach, or gone.
            let room = visible_room(conn, party, room_id)?;
            if room.status == RoomStatus::Closed {
                Err(Problem::conflict("room_closed", "the room is closed").into())
            } else {
                Err(no_such_room().into())
            }
        }
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => {
            // The same client_msg_id raced itself; the other try won.
            visible_room(conn, party, room_id)?;
            let existing = messages::find_by_client_id(conn, room_id, &posting.row.client_msg_id)?
                .ok_or_else(|| Error::from(diesel::result::Error::NotFound))?;
            Ok(Stored {
                message: existing,
                created: false,
            })
        }
        Err(err) => Err(err.into()),
    }
}

/// Moves the party's read cursor in a room they may see, up to its last
/// message; the cursor it ends at.
pub fn mark_read(
    conn: &mut PgConnection,
    party: Party,
    room_id: Uuid,
    seq: i64,
) -> Result<i64, Error> {
    let room = visible_room(conn, party, room_id)?;
    if seq < 0 || seq > room.last_seq {
        return Err(Problem::invalid_field(
            "seq",
            format!(
                "must be between 0 and the room's last seq ({})",
                room.last_seq
            ),
        )
        .into());
    }
    Ok(messages::mark_read(conn, room_id, party.user_id(), seq)?)
}
