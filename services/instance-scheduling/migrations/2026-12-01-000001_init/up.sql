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

-- Signing keys: keep identical to crates/signing/sql/signing_keys.sql (a test checks).
-- They sign connection tokens; every replica signs with the newest.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    private_key  BYTEA NOT NULL,
    public_key   BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Compute instances, each running a host agent. `active_sessions` counts
-- the sessions allocated or connected on it, and only changes in the
-- statement that claims a slot or frees one; the CHECK refuses overflow
-- whatever the code does.
CREATE TABLE instances (
    id                   UUID PRIMARY KEY,
    region               TEXT NOT NULL CHECK (char_length(region) BETWEEN 1 AND 64),
    -- host:port where clients reach the agent; none until it registers.
    address              TEXT CHECK (char_length(address) BETWEEN 1 AND 255),
    provider             TEXT NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 64),
    provider_ref         TEXT CHECK (char_length(provider_ref) <= 255),
    status               TEXT NOT NULL CHECK (status IN
                             ('provisioning', 'active', 'draining', 'unresponsive', 'terminating', 'terminated')),
    capacity             INT NOT NULL CHECK (capacity BETWEEN 1 AND 1000),
    active_sessions      INT NOT NULL DEFAULT 0 CHECK (active_sessions >= 0),
    cpu_pct              REAL NOT NULL DEFAULT 0 CHECK (cpu_pct BETWEEN 0 AND 100),
    mem_pct              REAL NOT NULL DEFAULT 0 CHECK (mem_pct BETWEEN 0 AND 100),
    -- SHA-256 of the agent's credential; the credential itself is never kept.
    credential_hash      BYTEA,
    last_heartbeat_at    TIMESTAMPTZ,
    drain_started_at     TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    registered_at        TIMESTAMPTZ,
    terminated_at        TIMESTAMPTZ,
    CHECK (active_sessions <= capacity),
    CHECK (status = 'provisioning' OR address IS NOT NULL OR status IN ('terminating', 'terminated')),
    CHECK ((status = 'terminated') = (terminated_at IS NOT NULL))
);
-- Candidates for a new session.
CREATE INDEX instances_active ON instances (region, active_sessions) WHERE status = 'active';
CREATE INDEX instances_by_status ON instances (status, region);

-- The provisioning jobs the reconciler asked for, one per launch or
-- terminate of an instance: the worker does each request_id once.
CREATE TABLE provisioning_requests (
    request_id  UUID PRIMARY KEY,
    instance_id UUID NOT NULL REFERENCES instances (id),
    action      TEXT NOT NULL CHECK (action IN ('launch', 'terminate')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (instance_id, action)
);

-- Sessions: a slot of an instance held for one user. `user_slot` numbers
-- a user's live sessions 1..MAX_SESSIONS_PER_USER, and the partial unique
-- index makes the database refuse a live session more than the limit,
-- under any concurrency (with a limit of 1: one live session per user).
CREATE TABLE sessions (
    id              UUID PRIMARY KEY,
    instance_id     UUID NOT NULL REFERENCES instances (id),
    user_id         UUID NOT NULL,
    app             TEXT CHECK (char_length(app) BETWEEN 1 AND 64),
    status          TEXT NOT NULL CHECK (status IN ('allocated', 'connected', 'ended', 'expired')),
    user_slot       INT NOT NULL CHECK (user_slot >= 1),
    idempotency_key TEXT CHECK (char_length(idempotency_key) BETWEEN 1 AND 200),
    -- The connection token's jti.
    token_id        UUID NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Until then the reservation may be used; it expires after.
    expires_at      TIMESTAMPTZ NOT NULL,
    connected_at    TIMESTAMPTZ,
    ended_at        TIMESTAMPTZ,
    end_reason      TEXT,
    CHECK ((status IN ('ended', 'expired')) = (ended_at IS NOT NULL)),
    CHECK (status <> 'connected' OR connected_at IS NOT NULL)
);
CREATE UNIQUE INDEX sessions_live_per_user ON sessions (user_id, user_slot)
    WHERE status IN ('allocated', 'connected');
CREATE UNIQUE INDEX sessions_idempotency ON sessions (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX sessions_live_by_instance ON sessions (instance_id)
    WHERE status IN ('allocated', 'connected');
CREATE INDEX sessions_reserved ON sessions (expires_at) WHERE status = 'allocated';

-- Why each allocation went where it did, or nowhere: the reason and the
-- instances it chose from, with their load at that moment.
CREATE TABLE allocation_decisions (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL,
    session_id  UUID,
    instance_id UUID,
    -- The regions tried, in order; empty: any region.
    regions     TEXT[] NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('allocated', 'refused')),
    reason      TEXT NOT NULL,
    candidates  JSONB NOT NULL DEFAULT '[]',
    decided_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX allocation_decisions_by_session ON allocation_decisions (session_id);
CREATE INDEX allocation_decisions_by_time ON allocation_decisions (decided_at);

-- The reconciler's memory per autoscaled region: when it last drained an
-- instance (the cooldown counts from there).
CREATE TABLE scaling (
    region              TEXT PRIMARY KEY,
    last_scale_down_at  TIMESTAMPTZ
);

-- Allocates a slot for p_user in one round trip (see allocation.rs):
--
-- 1. a retry (p_key seen before for this user) gets its session back;
-- 2. the user's lowest free slot number up to p_max_per_user, or refusal
--    'user_limit' (the unique index makes this exact under races: a
--    racing insert fails, and the caller tries again);
-- 3. per region of p_regions in order (NULL: any region), a slot of an
--    active instance that
--    heartbeat within p_stale_secs, claimed by raising its
--    active_sessions: one not held by another allocation first (SKIP
--    LOCKED, so concurrent allocations spread over instances), else the
--    best one, waiting for its lock; `pack` takes the fullest instance
--    that still has room, `spread` the emptiest; live CPU and memory
--    break ties;
-- 4. the session row and the decision, with the first five instances in
--    line.
--
-- Refusals: 'user_limit', or, when no region had a slot, 'region_full'
-- (fresh instances, all full), 'stale' (free slots only on instances
-- late with their heartbeat) or 'no_capacity' (no active instance).
CREATE FUNCTION sched_allocate(
    p_user UUID, p_regions TEXT[], p_app TEXT, p_key TEXT, p_max_per_user INT,
    p_strategy TEXT, p_stale_secs INT, p_ttl_secs INT,
    p_session UUID, p_token UUID, p_decision UUID
) RETURNS TABLE (
    outcome TEXT, reason TEXT,
    session_id UUID, session_status TEXT, expires_at TIMESTAMPTZ, token_id UUID,
    instance_id UUID, region TEXT, address TEXT
) LANGUAGE plpgsql
-- An instance row held elsewhere for long is not waited on forever: the
-- allocation gives up (a 503) and the client tries again.
SET lock_timeout = '2s'
AS $$
#variable_conflict use_column
DECLARE
    slot INT;
    r TEXT;
    chosen instances%ROWTYPE;
    line_up JSONB;
    first_line_up JSONB;
    tries INT;
    fell_back BOOLEAN := FALSE;
    why TEXT;
    fresh_after TIMESTAMPTZ := now() - make_interval(secs => p_stale_secs);
    until TIMESTAMPTZ := now() + make_interval(secs => p_ttl_secs);
BEGIN
    IF p_key IS NOT NULL THEN
        RETURN QUERY
            SELECT 'existing'::TEXT, NULL::TEXT, s.id, s.status, s.expires_at, s.token_id,
                   i.id, i.region, i.address
            FROM sessions s JOIN instances i ON i.id = s.instance_id
            WHERE s.user_id = p_user AND s.idempotency_key = p_key;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    SELECT n INTO slot FROM generate_series(1, p_max_per_user) AS n
    WHERE NOT EXISTS (
        SELECT 1 FROM sessions s
        WHERE s.user_id = p_user AND s.user_slot = n AND s.status IN ('allocated', 'connected')
    )
    ORDER BY n LIMIT 1;
    IF slot IS NULL THEN
        -- A try of the same key may have committed since the look above
        -- (this statement sees it now): that allocation is the answer.
        IF p_key IS NOT NULL THEN
            RETURN QUERY
                SELECT 'existing'::TEXT, NULL::TEXT, s.id, s.status, s.expires_at, s.token_id,
                       i.id, i.region, i.address
                FROM sessions s JOIN instances i ON i.id = s.instance_id
                WHERE s.user_id = p_user AND s.idempotency_key = p_key;
            IF FOUND THEN
                RETURN;
            END IF;
        END IF;
        RETURN QUERY SELECT 'refused'::TEXT, 'user_limit'::TEXT, NULL::UUID, NULL::TEXT,
                            NULL::TIMESTAMPTZ, NULL::UUID, NULL::UUID, NULL::TEXT, NULL::TEXT;
        RETURN;
    END IF;

    FOREACH r IN ARRAY coalesce(p_regions, ARRAY[NULL::TEXT]) LOOP
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'instance_id', c.id, 'capacity', c.capacity,
                   'active_sessions', c.active_sessions, 'cpu_pct', c.cpu_pct,
                   'mem_pct', c.mem_pct, 'last_heartbeat_at', c.last_heartbeat_at,
                   'fresh', c.last_heartbeat_at > fresh_after)), '[]')
        INTO line_up
        FROM (
            SELECT * FROM instances c
            WHERE c.status = 'active' AND (r IS NULL OR c.region = r)
            ORDER BY c.last_heartbeat_at > fresh_after DESC,
                     c.active_sessions >= c.capacity,
                     CASE WHEN p_strategy = 'pack' THEN c.capacity - c.active_sessions ELSE 0 END,
                     CASE WHEN p_strategy = 'spread' THEN c.active_sessions::REAL / c.capacity ELSE 0 END,
                     c.cpu_pct + c.mem_pct, c.id
            LIMIT 5
        ) c;
        first_line_up := coalesce(first_line_up, line_up);
        tries := 0;
        LOOP
            UPDATE instances i
            SET active_sessions = i.active_sessions + 1
            WHERE i.id = (
                SELECT c.id FROM instances c
                WHERE c.status = 'active' AND (r IS NULL OR c.region = r)
                  AND c.active_sessions < c.capacity AND c.last_heartbeat_at > fresh_after
                ORDER BY CASE WHEN p_strategy = 'pack' THEN c.capacity - c.active_sessions ELSE 0 END,
                         CASE WHEN p_strategy = 'spread' THEN c.active_sessions::REAL / c.capacity ELSE 0 END,
                         c.cpu_pct + c.mem_pct, c.id
                LIMIT 1
                FOR UPDATE SKIP LOCKED
            )
            RETURNING i.* INTO chosen;
            EXIT WHEN FOUND;
            -- Every free instance is held by another allocation: wait for
            -- the best, and take a slot if it still has one.
            UPDATE instances i
            SET active_sessions = i.active_sessions + 1
            WHERE i.id = (
                SELECT c.id FROM instances c
                WHERE c.status = 'active' AND (r IS NULL OR c.region = r)
                  AND c.active_sessions < c.capacity AND c.last_heartbeat_at > fresh_after
                ORDER BY CASE WHEN p_strategy = 'pack' THEN c.capacity - c.active_sessions ELSE 0 END,
                         CASE WHEN p_strategy = 'spread' THEN c.active_sessions::REAL / c.capacity ELSE 0 END,
                         c.cpu_pct + c.mem_pct, c.id
                LIMIT 1
            )
              AND i.status = 'active' AND i.active_sessions < i.capacity
              AND i.last_heartbeat_at > fresh_after
            RETURNING i.* INTO chosen;
            EXIT WHEN FOUND;
            EXIT WHEN NOT EXISTS (
                SELECT 1 FROM instances c
                WHERE c.status = 'active' AND (r IS NULL OR c.region = r)
                  AND c.active_sessions < c.capacity AND c.last_heartbeat_at > fresh_after
            );
            tries := tries + 1;
            EXIT WHEN tries >= 16;
        END LOOP;
        IF chosen.id IS NOT NULL THEN
            why := CASE WHEN fell_back THEN 'fallback_region' ELSE p_strategy END;
            INSERT INTO sessions (id, instance_id, user_id, app, status, user_slot,
                                  idempotency_key, token_id, expires_at)
            VALUES (p_session, chosen.id, p_user, p_app, 'allocated', slot, p_key, p_token, until);
            INSERT INTO allocation_decisions
                (id, user_id, session_id, instance_id, regions, outcome, reason, candidates)
            VALUES (p_decision, p_user, p_session, chosen.id, coalesce(p_regions, '{}'), 'allocated', why, line_up);
            RETURN QUERY SELECT 'allocated'::TEXT, why, p_session, 'allocated'::TEXT, until, p_token,
                                chosen.id, chosen.region, chosen.address;
            RETURN;
        END IF;
        fell_back := TRUE;
    END LOOP;

    why := CASE
        WHEN EXISTS (
            SELECT 1 FROM instances c
            WHERE c.status = 'active' AND (p_regions IS NULL OR c.region = ANY (p_regions)) AND c.last_heartbeat_at > fresh_after
        ) THEN 'region_full'
        WHEN EXISTS (
            SELECT 1 FROM instances c
            WHERE c.status = 'active' AND (p_regions IS NULL OR c.region = ANY (p_regions)) AND c.active_sessions < c.capacity
        ) THEN 'stale'
        ELSE 'no_capacity'
    END;
    INSERT INTO allocation_decisions (id, user_id, regions, outcome, reason, candidates)
    VALUES (p_decision, p_user, coalesce(p_regions, '{}'), 'refused', why, coalesce(first_line_up, '[]'));
    RETURN QUERY SELECT 'refused'::TEXT, why, NULL::UUID, NULL::TEXT, NULL::TIMESTAMPTZ,
                        NULL::UUID, NULL::UUID, NULL::TEXT, NULL::TEXT;
END
$$;

-- Frees the slot of a live session: `p_status` is 'ended' or 'expired'.
-- Returns whether this call ended it (false: it was not live).
CREATE FUNCTION sched_end_session(p_session UUID, p_status TEXT, p_reason TEXT)
RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    on_instance UUID;
BEGIN
    UPDATE sessions s SET status = p_status, ended_at = now(), end_reason = p_reason
    WHERE s.id = p_session AND s.status IN ('allocated', 'connected')
    RETURNING s.instance_id INTO on_instance;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    UPDATE instances i SET active_sessions = i.active_sessions - 1
    WHERE i.id = on_instance;
    RETURN TRUE;
END
$$;
