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

CREATE TABLE users (
    id               UUID PRIMARY KEY,
    email            TEXT UNIQUE,
    display_name     TEXT NOT NULL,
    password_hash    TEXT,
    roles            TEXT[] NOT NULL,
    status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    email_verified   BOOLEAN NOT NULL DEFAULT FALSE,
    roles_revision   BIGINT NOT NULL DEFAULT 0,
    status_revision  BIGINT NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    id             UUID PRIMARY KEY,
    user_id        UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT,
    user_agent     TEXT,
    ip             TEXT
);
CREATE INDEX sessions_user_active ON sessions (user_id, id) WHERE revoked_at IS NULL;

-- Every refresh token ever issued for a session, by SHA-256 hash. A token
-- with used_at set has been rotated; presenting it again is reuse.
CREATE TABLE refresh_tokens (
    token_hash  BYTEA PRIMARY KEY,
    session_id  UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    used_at     TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Single-use tokens sent by email (verify email, reset password).
CREATE TABLE one_time_tokens (
    token_hash  BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX one_time_tokens_user ON one_time_tokens (user_id, purpose);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    private_key  BYTEA NOT NULL,
    public_key   BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Failed logins per account (acct:<email>) and per client (ip:<address>).
CREATE TABLE login_throttle (
    key               TEXT PRIMARY KEY,
    failures          INT NOT NULL,
    window_started_at TIMESTAMPTZ NOT NULL
);
