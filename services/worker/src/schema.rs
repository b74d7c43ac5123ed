// @generated automatically by Diesel CLI.

diesel::table! {
    launched_agents (instance_id) {
        instance_id -> Uuid,
        launch_request_id -> Uuid,
        region -> Text,
        host -> Text,
        port -> Int4,
        pid -> Nullable<Int4>,
        process_start -> Nullable<Int8>,
        state -> Text,
        detail -> Nullable<Text>,
        launched_at -> Timestamptz,
        ended_at -> Nullable<Timestamptz>,
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
    processed_messages (consumer, message_id) {
        consumer -> Text,
        message_id -> Text,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    provisioning_done (request_id) {
        request_id -> Uuid,
        action -> Text,
        instance_id -> Uuid,
        outcome -> Text,
        done_at -> Timestamptz,
    }
}

diesel::table! {
    sent_emails (idempotency_key) {
        idempotency_key -> Text,
        message_id -> Text,
        template -> Text,
        recipient -> Text,
        started_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        owner_key -> Nullable<Int8>,
        send_started_at -> Nullable<Timestamptz>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    launched_agents,
    outbox,
    processed_messages,
    provisioning_done,
    sent_emails,
);
