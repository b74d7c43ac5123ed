-- Assignments in one round trip each (see assignment.rs): the transaction
-- that opens a room, and a drain for each room it takes, call one
-- function instead of a statement for the line-up, the pick, the agent,
-- the room and the decision. Functions plan their statements once per
-- connection.

-- An agent as a decision's `candidates` list shows them.
CREATE FUNCTION chat_candidate(
    p_user UUID, p_active INT, p_max INT, p_last_assigned TIMESTAMPTZ
) RETURNS JSONB LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'staff_id', p_user,
        'active_rooms', p_active,
        'max_active_rooms', p_max,
        'last_assigned_at', p_last_assigned
    )
$$;

-- Gives the room (its row locked by the caller, or inserted by it) to
-- p_agent (its row locked by the caller) and records decision p_decision
-- with p_candidates, or with the agent alone as they were. Returns the
-- room as it now is, with the decision's outcome and reason.
CREATE FUNCTION chat_give_room(
    p_room UUID, p_agent UUID, p_decision UUID, p_trigger TEXT, p_reason TEXT,
    p_decided_by UUID, p_candidates JSONB
) RETURNS TABLE (
    id UUID, visitor_id UUID, assignee_id UUID, status TEXT, priority TEXT,
    subject TEXT, created_at TIMESTAMPTZ, closed_at TIMESTAMPTZ,
    last_seq BIGINT, outcome TEXT, reason TEXT
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    candidates JSONB := p_candidates;
BEGIN
    IF candidates IS NULL THEN
        SELECT jsonb_build_array(chat_candidate(a.user_id, a.active_rooms, a.max_active_rooms, a.last_assigned_at))
        INTO candidates
        FROM agents a WHERE a.user_id = p_agent;
    END IF;
    UPDATE agents a
    SET active_rooms = a.active_rooms + 1, last_assigned_at = now(), updated_at = now()
    WHERE a.user_id = p_agent;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'chat_give_room: no agent %', p_agent;
    END IF;
    INSERT INTO assignment_decisions
        (id, room_id, trigger, outcome, reason, assignee_id, decided_by, candidates)
    VALUES (p_decision, p_room, p_trigger, 'assigned', p_reason, p_agent, p_decided_by, candidates);
    RETURN QUERY
        UPDATE rooms r
        SET assignee_id = p_agent, status = 'active', assigned_at = now(), updated_at = now()
        WHERE r.id = p_room
        RETURNING r.id, r.visitor_id, r.assignee_id, r.status, r.priority, r.subject,
                  r.created_at, r.closed_at, r.last_seq, 'assigned'::TEXT, p_reason;
END
$$;

-- Gives the room (waiting, its row locked by the caller or inserted by
-- it) to the first free agent: fewest active rooms, then longest since
-- their last room. With p_wait, an agent another transaction holds is
-- waited for; without, passed over. With p_queue_first, the room waits
-- if any other room does. The decision p_decision records the first five
-- agents in line, full ones last. A drain's room (trigger 'queue') that
-- nobody can take decides nothing and comes back with a null outcome.
CREATE FUNCTION chat_assign_room(
    p_room UUID, p_decision UUID, p_trigger TEXT, p_wait BOOLEAN, p_queue_first BOOLEAN
) RETURNS TABLE (
    id UUID, visitor_id UUID, assignee_id UUID, status TEXT, priority TEXT,
    subject TEXT, created_at TIMESTAMPTZ, closed_at TIMESTAMPTZ,
    last_seq BIGINT, outcome TEXT, reason TEXT
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    line_up JSONB;
    chosen agents%ROWTYPE;
    why TEXT;
BEGIN
    SELECT coalesce(jsonb_agg(
               chat_candidate(l.user_id, l.active_rooms, l.max_active_rooms, l.last_assigned_at)
               ORDER BY l.is_full, l.active_rooms, l.last_assigned_at NULLS FIRST, l.user_id),
           '[]')
    INTO line_up
    FROM (
        SELECT a.user_id, a.active_rooms, a.max_active_rooms, a.last_assigned_at,
               a.active_rooms >= a.max_active_rooms AS is_full
        FROM agents a
        WHERE a.online AND a.is_agent AND NOT a.disabled
        ORDER BY is_full, a.active_rooms, a.last_assigned_at NULLS FIRST, a.user_id
        LIMIT 5
    ) l;

    IF p_queue_first AND EXISTS (
        SELECT 1 FROM rooms r WHERE r.status = 'waiting' AND r.id <> p_room
    ) THEN
        why := 'queue_not_empty';
    ELSE
        IF p_wait THEN
            SELECT * INTO chosen FROM agents a
            WHERE a.online AND a.is_agent AND NOT a.disabled AND a.active_rooms < a.max_active_rooms
            ORDER BY a.active_rooms, a.last_assigned_at NULLS FIRST, a.user_id
            LIMIT 1 FOR UPDATE;
        ELSE
            SELECT * INTO chosen FROM agents a
            WHERE a.online AND a.is_agent AND NOT a.disabled AND a.active_rooms < a.max_active_rooms
            ORDER BY a.active_rooms, a.last_assigned_at NULLS FIRST, a.user_id
            LIMIT 1 FOR UPDATE SKIP LOCKED;
        END IF;
        IF FOUND THEN
            -- Why the chosen one came first among the free ones in line.
            SELECT CASE
                       WHEN count(*) = 0 THEN 'only_free_staff'
                       WHEN bool_or((c ->> 'active_rooms')::INT = chosen.active_rooms) THEN 'idle_longest'
                       ELSE 'fewest_active_rooms'
                   END
            INTO why
            FROM jsonb_array_elements(line_up) c
            WHERE (c ->> 'staff_id')::UUID <> chosen.user_id
              AND (c ->> 'active_rooms')::INT < (c ->> 'max_active_rooms')::INT;
            RETURN QUERY SELECT * FROM chat_give_room(
                p_room, chosen.user_id, p_decision, p_trigger, why, NULL, line_up);
            RETURN;
        END IF;
        IF p_trigger = 'queue' THEN
            RETURN QUERY
                SELECT r.id, r.visitor_id, r.assignee_id, r.status, r.priority, r.subject,
                       r.created_at, r.closed_at, r.last_seq, NULL::TEXT, NULL::TEXT
                FROM rooms r WHERE r.id = p_room;
            RETURN;
        END IF;
        why := CASE
                   WHEN jsonb_array_length(line_up) = 0 THEN 'no_staff_online'
                   WHEN NOT EXISTS (
                       SELECT 1 FROM jsonb_array_elements(line_up) c
                       WHERE (c ->> 'active_rooms')::INT < (c ->> 'max_active_rooms')::INT
                   ) THEN 'all_staff_at_capacity'
                   ELSE 'free_staff_busy_elsewhere'
               END;
    END IF;
    INSERT INTO assignment_decisions (id, room_id, trigger, outcome, reason, candidates)
    VALUES (p_decision, p_room, p_trigger, 'waiting', why, line_up);
    RETURN QUERY
        SELECT r.id, r.visitor_id, r.assignee_id, r.status, r.priority, r.subject,
               r.created_at, r.closed_at, r.last_seq, 'waiting'::TEXT, why
        FROM rooms r WHERE r.id = p_room;
END
$$;
