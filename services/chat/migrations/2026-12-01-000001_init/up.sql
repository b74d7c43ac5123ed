-- Bus tables: keep identical to crates/bus/sql/bus_tables.sql (a test checks).
-- Tables of the bus crate (crates/bus): the transactional outbox and the
-- record of messages a consumer has already handled.
CREATE TABLE outbox (
    id           UUID PRIMARY KEY,
    seq          BIGSERIAL NOT NULL,
    exchange     TEXT NOT NULL,
    routing_key  TEXT NOT NULL,
    message_type TEXT NOT NULL,
    payload      JSONB NOT NULL,
    headers      JSONB NOT NULL DEFAULT '{}',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ,
    locked_until TIMESTAMPTZ,
    attempts     INT NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE published_at IS NULL;

CREATE TABLE processed_messages (
    consumer     TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

-- What chat knows of people, from auth's and accounts' events: names and
-- addresses for emails. `revision` orders account events.
CREATE TABLE people (
    user_id      UUID PRIMARY KEY,
    display_name TEXT NOT NULL,
    email        TEXT,
    revision     BIGINT NOT NULL DEFAULT 0,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Staff members (the staff or admin role) as chat sees them: settings,
-- load and presence. A row appears when such a user first calls chat or
-- an event names them; `is_agent` and `disabled` follow account events,
-- each with the revision of the event that last set it.
CREATE TABLE agents (
    user_id          UUID PRIMARY KEY,
    is_agent         BOOLEAN NOT NULL DEFAULT TRUE,
    disabled         BOOLEAN NOT NULL DEFAULT FALSE,
    roles_revision   BIGINT NOT NULL DEFAULT 0,
    status_revision  BIGINT NOT NULL DEFAULT 0,
    max_active_rooms INT NOT NULL DEFAULT 3 CHECK (max_active_rooms BETWEEN 0 AND 1000),
    notify_by_email  BOOLEAN NOT NULL DEFAULT TRUE,
    -- Rooms assigned and not closed; kept in the transactions that assign,
    -- transfer and close, with the agent's row locked.
    active_rooms     INT NOT NULL DEFAULT 0 CHECK (active_rooms >= 0),
    last_assigned_at TIMESTAMPTZ,
    online           BOOLEAN NOT NULL DEFAULT FALSE,
    -- When the agent's last connection ended; offline follows after the
    -- grace period unless another connection opens.
    last_seen_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX agents_free ON agents (active_rooms, last_assigned_at)
    WHERE online AND is_agent AND NOT disabled;

CREATE TABLE rooms (
    id              UUID PRIMARY KEY,
    visitor_id      UUID NOT NULL,
    assignee_id     UUID,
    status          TEXT NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'active', 'closed')),
    priority        TEXT NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    -- The waiting queue's order, urgent first: set with the priority and
    -- held to it by the CHECK below. (Not a generated column: PostgreSQL
    -- would rebuild its expression on every UPDATE of the row, and a room
    -- is updated with every message.)
    priority_rank   SMALLINT NOT NULL DEFAULT 2,
    subject         TEXT CHECK (char_length(subject) BETWEEN 1 AND 200),
    last_seq        BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    idempotency_key TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    assigned_at     TIMESTAMPTZ,
    closed_at       TIMESTAMPTZ,
    closed_by       UUID,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (status <> 'waiting' OR assignee_id IS NULL),
    CHECK (status <> 'active' OR assignee_id IS NOT NULL),
    CHECK ((status = 'closed') = (closed_at IS NOT NULL)),
    CHECK (priority_rank = CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END)
);
CREATE UNIQUE INDEX rooms_idempotency ON rooms (visitor_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX rooms_queue ON rooms (priority_rank, created_at, id) WHERE status = 'waiting';
CREATE INDEX rooms_by_visitor ON rooms (visitor_id, id);
CREATE INDEX rooms_by_assignee ON rooms (assignee_id, id) WHERE assignee_id IS NOT NULL;
CREATE INDEX rooms_by_status ON rooms (status, id);

-- `seq` is the room's `last_seq` taken in the inserting transaction, so it
-- is gapless and ordered; a retried send finds its `client_msg_id`.
CREATE TABLE messages (
    room_id       UUID NOT NULL REFERENCES rooms (id),
    seq           BIGINT NOT NULL CHECK (seq >= 1),
    id            UUID NOT NULL,
    author_id     UUID NOT NULL,
    author_role   TEXT NOT NULL CHECK (author_role IN ('visitor', 'staff')),
    body          TEXT NOT NULL CHECK (char_length(body) BETWEEN 1 AND 4000),
    client_msg_id TEXT NOT NULL CHECK (char_length(client_msg_id) BETWEEN 1 AND 200),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, seq),
    UNIQUE (room_id, client_msg_id)
);

CREATE TABLE read_cursors (
    room_id       UUID NOT NULL REFERENCES rooms (id),
    user_id       UUID NOT NULL,
    last_read_seq BIGINT NOT NULL CHECK (last_read_seq >= 0),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);

CREATE TABLE bookmarks (
    staff_id   UUID NOT NULL,
    visitor_id UUID NOT NULL,
    note       TEXT NOT NULL CHECK (char_length(note) <= 2000),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (staff_id, visitor_id)
);

-- Every assignment decision with what it saw: "why did this volunteer get
-- it?" `candidates` lists the first online agents in the order of choice,
-- with their load at that moment.
CREATE TABLE assignment_decisions (
    id          UUID PRIMARY KEY,
    room_id     UUID NOT NULL REFERENCES rooms (id),
    decided_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    trigger     TEXT NOT NULL CHECK (trigger IN ('opened', 'queue', 'claim', 'transfer')),
    outcome     TEXT NOT NULL CHECK (outcome IN ('assigned', 'waiting')),
    reason      TEXT NOT NULL,
    assignee_id UUID,
    decided_by  UUID,
    candidates  JSONB NOT NULL DEFAULT '[]'
);
CREATE INDEX assignment_decisions_by_room ON assignment_decisions (room_id, decided_at);

-- At most one chat_waiting email per agent per ten minutes, whichever
-- replica notices the waiting room.
CREATE TABLE waiting_notices (
    staff_id     UUID PRIMARY KEY,
    last_sent_at TIMESTAMPTZ NOT NULL
);

-- Live chat replicas and the agent connections each holds. A replica that
-- stops heartbeating is expired by the leader, and its connections with it.
CREATE TABLE replicas (
    id           UUID PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE connections (
    id         UUID PRIMARY KEY,
    replica_id UUID NOT NULL REFERENCES replicas (id) ON DELETE CASCADE,
    user_id    UUID NOT NULL,
    opened_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX connections_by_user ON connections (user_id);
CREATE INDEX connections_by_replica ON connections (replica_id);

-- Stores a message with its room's next seq, as store::messages::store
-- describes. A function, so that each connection plans its statements
-- once instead of on every message.
CREATE FUNCTION chat_store_message(
    p_room UUID, p_client_msg_id TEXT, p_only_visitor UUID, p_id UUID,
    p_author UUID, p_author_role TEXT, p_body TEXT, p_created_at TIMESTAMPTZ
) RETURNS TABLE (
    room_id UUID, seq BIGINT, id UUID, author_id UUID, author_role TEXT,
    body TEXT, client_msg_id TEXT, created_at TIMESTAMPTZ, created BOOLEAN
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    next_seq BIGINT;
BEGIN
    RETURN QUERY
        SELECT m.room_id, m.seq, m.id, m.author_id, m.author_role, m.body,
               m.client_msg_id, m.created_at, FALSE
        FROM messages m
        WHERE m.room_id = p_room AND m.client_msg_id = p_client_msg_id;
    IF FOUND THEN
        RETURN;
    END IF;
    UPDATE rooms r SET last_seq = r.last_seq + 1
    WHERE r.id = p_room AND r.status <> 'closed'
      AND (p_only_visitor IS NULL OR r.visitor_id = p_only_visitor)
    RETURNING r.last_seq INTO next_seq;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO messages (room_id, seq, id, author_id, author_role, body, client_msg_id, created_at)
    VALUES (p_room, next_seq, p_id, p_author, p_author_role, p_body, p_client_msg_id, p_created_at);
    RETURN QUERY SELECT p_room, next_seq, p_id, p_author, p_author_role, p_body,
                        p_client_msg_id, p_created_at, TRUE;
END
$$;
