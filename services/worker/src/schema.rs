// @generated automatically by Diesel CLI.

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

diesel::allow_tables_to_appear_in_same_query!(outbox, processed_messages, sent_emails,);
