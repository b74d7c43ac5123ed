//! Every change of a room's assignee or status, each in one transaction
//! with the rows it depends on locked:
//!
//! - capacity: an agent's row is locked while a room is given to them and
//!   their `active_rooms` checked against `max_active_rooms` on the locked
//!   row, so no replica can take them over capacity;
//! - one assignee: the room's row is locked and must still be `waiting`;
//! - queue order: rooms leave the queue (priority, then age) only under a
//!   transaction advisory lock, one drain at a time. A new room skips the
//!   queue only when nothing else waits.
//!
//! Each decision is recorded with its reason and the agents it saw. The
//! functions return the [`Changes`] to announce once the transaction has
//! committed.

use crate::model::Room;
use crate::model::{Priority, RoomStatus};
use crate::store::agents::{self, AgentRow};
use crate::store::assignments::{self, Attempt};
use crate::store::messages;
use crate::store::rooms;
use chrono::Utc;
use diesel::prelude::*;
use domain::messages::{ChatRoomAssigned, ChatRoomClosed, ChatRoomOpened, EmailJob, EmailTemplate};
use domain::Email;
use platform::error::Error;
use platform::Problem;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A transcript holds at most this many messages (the latest).
const TRANSCRIPT_MESSAGES: i64 = 1000;

/// What a committed change means for others: rooms to announce, events in
/// the outbox, and whether waiting rooms may now find an agent.
#[derive(Debug, Default)]
pub struct Changes {
    pub rooms: Vec<Room>,
    pub events: usize,
    pub queue_may_move: bool,
    /// `(trigger, outcome, reason)` of each decision made.
    pub decisions: Vec<(&'static str, &'static str, String)>,
}

impl Changes {
    fn merge(&mut self, other: Changes) {
        self.rooms.extend(other.rooms);
        self.events += other.events;
        self.queue_may_move |= other.queue_may_move;
        self.decisions.extend(other.decisions);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Opened,
    Queue,
    Claim,
    Transfer,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Opened => "opened",
            Trigger::Queue => "queue",
            Trigger::Claim => "claim",
            Trigger::Transfer => "transfer",
        }
    }
}

/// Announces what an attempt decided: counts the decision and, for an
/// assignment, puts `chat.room_assigned` in the outbox. `before` is the
/// room as it was.
fn settle(
    conn: &mut PgConnection,
    before: &Room,
    trigger: Trigger,
    attempt: Attempt,
    changes: &mut Changes,
) -> QueryResult<Room> {
    let Attempt {
        room,
        outcome,
        reason,
    } = attempt;
    let Some(outcome) = outcome else {
        return Ok(room);
    };
    let reason = reason.unwrap_or_default();
    let outcome = match (outcome.as_str(), room.assignee_id) {
        ("assigned", Some(assignee_id)) => {
            bus::outbox::enqueue(
                conn,
                ChatRoomAssigned {
                    room_id: room.id,
                    assignee_id,
                    previous_assignee_id: before.assignee_id,
                    trigger: trigger.as_str().to_string(),
                    reason: reason.clone(),
                    assigned_at: Utc::now(),
                },
            )?;
            changes.events += 1;
            "assigned"
        }
        _ => "waiting",
    };
    changes.decisions.push((trigger.as_str(), outcome, reason));
    Ok(room)
}

/// Opens a room for `visitor`, assigned at once when someone is free and
/// nothing else waits. A retry with the same idempotency key returns the
/// room it opened (and `false`).
pub fn open(
    conn: &mut PgConnection,
    visitor: Uuid,
    subject: Option<&str>,
    idempotency_key: Option<&str>,
) -> QueryResult<(Room, bool, Changes)> {
    conn.transaction(|conn| {
        let Some(room) = rooms::insert(conn, visitor, subject, idempotency_key)? else {
            let key = idempotency_key.unwrap_or_default();
            let existing = rooms::find_by_idempotency_key(conn, visitor, key)?
                .ok_or(diesel::result::Error::NotFound)?;
            return Ok((existing, false, Changes::default()));
        };
        // Agents another open holds are passed over: the next free one
        // will do, and nobody waits on a lock.
        let attempt =
            assignments::to_first_free(conn, room.id, Trigger::Opened.as_str(), false, true)?;
        let mut changes = Changes::default();
        bus::outbox::enqueue(
            conn,
            ChatRoomOpened {
                room_id: room.id,
                visitor_id: visitor,
                priority: room.priority.as_str().to_string(),
                subject: room.subject.clone(),
                opened_at: room.created_at,
            },
        )?;
        changes.events += 1;
        let room = settle(conn, &room, Trigger::Opened, attempt, &mut changes)?;
        if room.status == RoomStatus::Waiting {
            changes.events += notify_offline_agents(conn, &room)?;
            // A drain after commit sees this room, in case an agent was
            // busy in another transaction just now.
            changes.queue_may_move = true;
        }
        changes.rooms.push(room.clone());
        Ok((room, true, changes))
    })
}

/// `chat_waiting` emails to offline agents who want them, at most one per
/// agent per ten minutes. The count of jobs written.
fn notify_offline_agents(conn: &mut PgConnection, room: &Room) -> QueryResult<usize> {
    let recipients = agents::claim_waiting_notices(conn)?;
    for person in &recipients {
        let Some(email) = &person.email else { continue };
        let mut vars = BTreeMap::new();
        vars.insert("display_name".to_string(), person.display_name.clone());
        vars.insert("room_id".to_string(), room.id.to_string());
        if let Some(subject) = &room.subject {
            vars.insert("subject".to_string(), subject.clone());
        }
        bus::outbox::enqueue(
            conn,
            EmailJob {
                to: email.clone(),
                template: EmailTemplate::ChatWaiting,
                vars,
                idempotency_key: format!("chat_waiting:{}:{}", person.user_id, room.id),
            },
        )?;
    }
    Ok(recipients.len())
}

/// Assigns waiting rooms in queue order while agents are free, one room
/// per transaction. A transaction waits only for the head room (a claim
/// or transfer may hold it), never for an agent: staff rows another
/// transaction holds are passed over. Holding rooms or agents while
/// waiting for more is how it would deadlock with a claim (room, then its
/// staff member) or a transfer (room, then both staff members).
pub fn drain(conn: &mut PgConnection) -> QueryResult<Changes> {
    let mut all = Changes::default();
    loop {
        let assigned = conn.transaction(|conn| {
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(crate::QUEUE_LOCK)
                .execute(conn)?;
            let Some(room) = rooms::next_waiting(conn)? else {
                return Ok::<_, diesel::result::Error>(None);
            };
            let mut changes = Changes::default();
            let attempt =
                assignments::to_first_free(conn, room.id, Trigger::Queue.as_str(), false, false)?;
            let room = settle(conn, &room, Trigger::Queue, attempt, &mut changes)?;
            if room.status != RoomStatus::Active {
                return Ok(None);
            }
            changes.rooms.push(room);
            Ok(Some(changes))
        })?;
        match assigned {
            Some(changes) => all.merge(changes),
            None => return Ok(all),
        }
    }
}

fn no_such_room() -> Error {
    Problem::not_found("no such room").into()
}

fn room_closed() -> Error {
    Problem::conflict("room_closed", "the room is closed").into()
}

/// `agent` takes a waiting room.
pub fn claim(
    conn: &mut PgConnection,
    room_id: Uuid,
    agent: Uuid,
) -> Result<(Room, Changes), Error> {
    conn.transaction(|conn| {
        agents::ensure(conn, agent)?;
        let room = rooms::find_for_update(conn, room_id)?.ok_or_else(no_such_room)?;
        if room.status != RoomStatus::Waiting {
            return Err(Problem::conflict(
                "room_not_waiting",
                format!("the room is {}, not waiting", room.status),
            )
            .into());
        }
        let me = agents::find_for_update(conn, agent)?.ok_or_else(no_such_room)?;
        if !me.is_agent || me.disabled {
            return Err(Problem::forbidden("you are no longer an active staff member").into());
        }
        if !me.has_capacity() {
            return Err(Problem::conflict(
                "at_capacity",
                format!(
                    "you already have {} active rooms (max_active_rooms is {})",
                    me.active_rooms, me.max_active_rooms
                ),
            )
            .into());
        }
        let mut changes = Changes::default();
        let attempt = assignments::to_agent(
            conn,
            room.id,
            agent,
            Trigger::Claim.as_str(),
            "claimed",
            Some(agent),
        )?;
        let room = settle(conn, &room, Trigger::Claim, attempt, &mut changes)?;
        changes.rooms.push(room.clone());
        Ok((room, changes))
    })
}

/// Moves a room to another agent (`by` is the staff member asking).
pub fn transfer(
    conn: &mut PgConnection,
    room_id: Uuid,
    by: Uuid,
    target: Uuid,
) -> Result<(Room, Changes), Error> {
    conn.transaction(|conn| {
        let room = rooms::find_for_update(conn, room_id)?.ok_or_else(no_such_room)?;
        if room.status == RoomStatus::Closed {
            return Err(room_closed());
        }
        let not_staff = || -> Error {
            Problem::invalid_field("staff_id", "is not an active staff member").into()
        };
        let known = agents::find(conn, target)?.ok_or_else(not_staff)?;
        if !known.is_agent || known.disabled {
            return Err(not_staff());
        }
        if room.assignee_id == Some(target) {
            return Ok((room, Changes::default()));
        }
        // Both agents' rows, always in id order, so that two transfers in
        // opposite directions cannot deadlock.
        let mut ids: Vec<Uuid> = room.assignee_id.into_iter().chain([target]).collect();
        ids.sort();
        let mut locked = Vec::new();
        for id in ids {
            if let Some(row) = agents::find_for_update(conn, id)? {
                locked.push(row);
            }
        }
        let to = locked
            .iter()
            .find(|agent| agent.user_id == target)
            .cloned()
            .ok_or_else(not_staff)?;
        if !to.has_capacity() {
            return Err(Problem::conflict(
                "at_capacity",
                format!(
                    "the staff member already has {} active rooms (max_active_rooms is {})",
                    to.active_rooms, to.max_active_rooms
                ),
            )
            .into());
        }
        let mut changes = Changes::default();
        if let Some(previous) = room.assignee_id {
            agents::remove_room(conn, previous)?;
            changes.queue_may_move = true;
        }
        let attempt = assignments::to_agent(
            conn,
            room.id,
            to.user_id,
            Trigger::Transfer.as_str(),
            "transferred",
            Some(by),
        )?;
        let room = settle(conn, &room, Trigger::Transfer, attempt, &mut changes)?;
        changes.rooms.push(room.clone());
        Ok((room, changes))
    })
}

pub fn set_priority(
    conn: &mut PgConnection,
    room_id: Uuid,
    priority: Priority,
) -> Result<(Room, Changes), Error> {
    conn.transaction(|conn| {
        let room = rooms::find_for_update(conn, room_id)?.ok_or_else(no_such_room)?;
        if room.status == RoomStatus::Closed {
            return Err(room_closed());
        }
        if room.priority == priority {
            return Ok((room, Changes::default()));
        }
        let room = rooms::set_priority(conn, room_id, priority)?;
        Ok((
            room.clone(),
            Changes {
                rooms: vec![room],
                ..Changes::default()
            },
        ))
    })
}

/// Closes a room (closing a closed room changes nothing); emails the
/// transcript to `transcript_to` if asked.
pub fn close(
    conn: &mut PgConnection,
    room_id: Uuid,
    by: Uuid,
    transcript_to: Option<Email>,
) -> Result<(Room, Changes), Error> {
    conn.transaction(|conn| {
        let room = rooms::find_for_update(conn, room_id)?.ok_or_else(no_such_room)?;
        if room.status == RoomStatus::Closed {
            return Ok((room, Changes::default()));
        }
        let mut changes = Changes::default();
        if let (RoomStatus::Active, Some(assignee)) = (room.status, room.assignee_id) {
            agents::find_for_update(conn, assignee)?;
            agents::remove_room(conn, assignee)?;
            changes.queue_may_move = true;
        }
        let closed = rooms::close(conn, room_id, by)?;
        bus::outbox::enqueue(
            conn,
            ChatRoomClosed {
                room_id,
                visitor_id: closed.visitor_id,
                assignee_id: closed.assignee_id,
                closed_by: by,
                closed_at: closed.closed_at.unwrap_or_else(Utc::now),
                messages: closed.last_seq,
            },
        )?;
        changes.events += 1;
        if let Some(to) = transcript_to {
            enqueue_transcript(conn, &closed, to)?;
            changes.events += 1;
        }
        changes.rooms.push(closed.clone());
        Ok((closed, changes))
    })
}

fn enqueue_transcript(conn: &mut PgConnection, room: &Room, to: Email) -> QueryResult<()> {
    let first = (room.last_seq - TRANSCRIPT_MESSAGES).max(0);
    let lines: Vec<String> = messages::range(conn, room.id, first, room.last_seq)?
        .into_iter()
        .map(|message| {
            format!(
                "[{}] {}: {}",
                message.created_at.format("%Y-%m-%d %H:%M UTC"),
                message.author_role,
                message.body
            )
        })
        .collect();
    let name = agents::person(conn, room.visitor_id)?
        .map(|person| person.display_name)
        .unwrap_or_else(|| "there".to_string());
    let mut vars = BTreeMap::new();
    vars.insert("display_name".to_string(), name);
    vars.insert("room_id".to_string(), room.id.to_string());
    vars.insert("transcript".to_string(), lines.join("\n"));
    bus::outbox::enqueue(
        conn,
        EmailJob {
            to: to.as_str().to_string(),
            template: EmailTemplate::ChatTranscript,
            vars,
            idempotency_key: format!("chat_transcript:{}", room.id),
        },
    )
    .map(|_| ())
}

/// The agent's new settings; more room may let waiting rooms move.
pub fn update_settings(
    conn: &mut PgConnection,
    agent: Uuid,
    max_active_rooms: i32,
    notify_by_email: bool,
) -> Result<(AgentRow, Changes), Error> {
    conn.transaction(|conn| {
        agents::ensure(conn, agent)?;
        agents::find_for_update(conn, agent)?;
        let row = agents::update_settings(conn, agent, max_active_rooms, notify_by_email)?;
        Ok((
            row,
            Changes {
                queue_may_move: true,
                ..Changes::default()
            },
        ))
    })
}
