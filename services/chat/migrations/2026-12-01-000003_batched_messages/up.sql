-- Messages stored in batches (see store::messages::store_batch): those
-- that arrive together share one transaction, one round trip and one
-- commit. Element n of each array is one message, as chat_store_message
-- takes it.
--
-- A batch holds the locks of all its rooms until it commits, so it never
-- waits for a room another transaction holds (that could deadlock with a
-- drain, which holds rooms too): such a message, like one for a closed
-- room, one out of the visitor's reach or one already stored, comes back
-- with no row, and the caller stores it on its own. Rooms are taken in id
-- order, messages of one room in the order given.
CREATE FUNCTION chat_store_messages(
    p_rooms UUID[], p_client_msg_ids TEXT[], p_only_visitors UUID[], p_ids UUID[],
    p_authors UUID[], p_author_roles TEXT[], p_bodies TEXT[], p_created_ats TIMESTAMPTZ[]
) RETURNS TABLE (
    ord INT, room_id UUID, seq BIGINT, id UUID, author_id UUID, author_role TEXT,
    body TEXT, client_msg_id TEXT, created_at TIMESTAMPTZ, created BOOLEAN
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n INT;
    next_seq BIGINT;
BEGIN
    FOR n IN
        SELECT i FROM generate_subscripts(p_rooms, 1) AS i ORDER BY p_rooms[i], i
    LOOP
        PERFORM 1 FROM rooms r
        WHERE r.id = p_rooms[n] AND r.status <> 'closed'
          AND (p_only_visitors[n] IS NULL OR r.visitor_id = p_only_visitors[n])
        FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        -- Under the room's lock, a message of this client id is either
        -- committed (and seen here) or not stored at all.
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM messages m
            WHERE m.room_id = p_rooms[n] AND m.client_msg_id = p_client_msg_ids[n]
        );
        UPDATE rooms r SET last_seq = r.last_seq + 1
        WHERE r.id = p_rooms[n]
        RETURNING r.last_seq INTO next_seq;
        INSERT INTO messages (room_id, seq, id, author_id, author_role, body, client_msg_id, created_at)
        VALUES (p_rooms[n], next_seq, p_ids[n], p_authors[n], p_author_roles[n], p_bodies[n],
                p_client_msg_ids[n], p_created_ats[n]);
        RETURN QUERY SELECT n, p_rooms[n], next_seq, p_ids[n], p_authors[n], p_author_roles[n],
                            p_bodies[n], p_client_msg_ids[n], p_created_ats[n], TRUE;
    END LOOP;
END
$$;
