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

-- One row per email job the worker has started to send, by its
-- idempotency key. `sent_at` set: delivered, never send again. Left unset:
-- the worker stopped mid-send and the outcome is unknown.
CREATE TABLE sent_emails (
    idempotency_key TEXT PRIMARY KEY,
    message_id      TEXT NOT NULL,
    template        TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at         TIMESTAMPTZ
);
