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

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- The user directory. Rows are created from auth's user.registered event;
-- accounts is the authority for roles and status from then on. `revision`
-- grows with every change and travels on account events, so consumers can
-- ignore one that arrives after a newer one.
CREATE TABLE profiles (
    id              UUID PRIMARY KEY,
    email           TEXT,
    display_name    TEXT NOT NULL,
    avatar_url      TEXT,
    locale          TEXT,
    timezone        TEXT,
    roles           TEXT[] NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    email_verified  BOOLEAN NOT NULL DEFAULT FALSE,
    revision        BIGINT NOT NULL DEFAULT 1,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Case-insensitive prefix and substring search on email and display name.
CREATE INDEX profiles_email_trgm ON profiles USING gin (lower(email) gin_trgm_ops);
CREATE INDEX profiles_name_trgm ON profiles USING gin (lower(display_name) gin_trgm_ops);
CREATE INDEX profiles_roles ON profiles USING gin (roles);
CREATE INDEX profiles_status ON profiles (status, id);
