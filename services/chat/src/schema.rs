// @generated automatically by Diesel CLI.

diesel::table! {
    agents (user_id) {
        user_id -> Uuid,
        is_agent -> Bool,
        disabled -> Bool,
        roles_revision -> Int8,
        status_revision -> Int8,
        max_active_rooms -> Int4,
        notify_by_email -> Bool,
        active_rooms -> Int4,
        last_assigned_at -> Nullable<Timestamptz>,
        online -> Bool,
        last_seen_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    assignment_decisions (id) {
        id -> Uuid,
        room_id -> Uuid,
        decided_at -> Timestamptz,
        trigger -> Text,
        outcome -> Text,
        reason -> Text,
        assignee_id -> Nullable<Uuid>,
        decided_by -> Nullable<Uuid>,
        candidates -> Jsonb,
    }
}

diesel::table! {
    bookmarks (staff_id, visitor_id) {
        staff_id -> Uuid,
        visitor_id -> Uuid,
        note -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    connections (id) {
        id -> Uuid,
        replica_id -> Uuid,
        user_id -> Uuid,
        opened_at -> Timestamptz,
    }
}

diesel::table! {
    messages (room_id, seq) {
        room_id -> Uuid,
        seq -> Int8,
        id -> Uuid,
        author_id -> Uuid,
        author_role -> Text,
        body -> Text,
        client_msg_id -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Uuid,
        seq -> Int8,
        exchange -> Text,
        routing_key -> Text,
        message_type -> Text,
        payload -> Jsonb,
        headers -> Jsonb,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        locked_until -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    people (user_id) {
        user_id -> Uuid,
        display_name -> Text,
        email -> Nullable<Text>,
        revision -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    processed_messages (consumer, message_id) {
        consumer -> Text,
        message_id -> Text,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    read_cursors (room_id, user_id) {
        room_id -> Uuid,
        user_id -> Uuid,
        last_read_seq -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    replicas (id) {
        id -> Uuid,
        started_at -> Timestamptz,
        heartbeat_at -> Timestamptz,
    }
}

diesel::table! {
    rooms (id) {
        id -> Uuid,
        visitor_id -> Uuid,
        assignee_id -> Nullable<Uuid>,
        status -> Text,
        priority -> Text,
        priority_rank -> Int2,
        subject -> Nullable<Text>,
        last_seq -> Int8,
        idempotency_key -> Nullable<Text>,
        created_at -> Timestamptz,
        assigned_at -> Nullable<Timestamptz>,
        closed_at -> Nullable<Timestamptz>,
        closed_by -> Nullable<Uuid>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    waiting_notices (staff_id) {
        staff_id -> Uuid,
        last_sent_at -> Timestamptz,
    }
}

diesel::joinable!(assignment_decisions -> rooms (room_id));
diesel::joinable!(connections -> replicas (replica_id));
diesel::joinable!(messages -> rooms (room_id));
diesel::joinable!(read_cursors -> rooms (room_id));

diesel::allow_tables_to_appear_in_same_query!(
    agents,
    assignment_decisions,
    bookmarks,
    connections,
    messages,
    outbox,
    people,
    processed_messages,
    read_cursors,
    replicas,
    rooms,
    waiting_notices,
);
