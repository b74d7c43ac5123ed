// @generated automatically by Diesel CLI.

diesel::table! {
    allocation_decisions (id) {
        id -> Uuid,
        user_id -> Uuid,
        session_id -> Nullable<Uuid>,
        instance_id -> Nullable<Uuid>,
        regions -> Array<Nullable<Text>>,
        outcome -> Text,
        reason -> Text,
        candidates -> Jsonb,
        decided_at -> Timestamptz,
    }
}

diesel::table! {
    instances (id) {
        id -> Uuid,
        region -> Text,
        address -> Nullable<Text>,
        provider -> Text,
        provider_ref -> Nullable<Text>,
        status -> Text,
        capacity -> Int4,
        active_sessions -> Int4,
        cpu_pct -> Float4,
        mem_pct -> Float4,
        credential_hash -> Nullable<Bytea>,
        last_heartbeat_at -> Nullable<Timestamptz>,
        drain_started_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        registered_at -> Nullable<Timestamptz>,
        terminated_at -> Nullable<Timestamptz>,
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
    provisioning_requests (request_id) {
        request_id -> Uuid,
        instance_id -> Uuid,
        action -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    scaling (region) {
        region -> Text,
        last_scale_down_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        instance_id -> Uuid,
        user_id -> Uuid,
        app -> Nullable<Text>,
        status -> Text,
        user_slot -> Int4,
        idempotency_key -> Nullable<Text>,
        token_id -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        connected_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        end_reason -> Nullable<Text>,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        private_key -> Bytea,
        public_key -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(provisioning_requests -> instances (instance_id));
diesel::joinable!(sessions -> instances (instance_id));

diesel::allow_tables_to_appear_in_same_query!(
    allocation_decisions,
    instances,
    outbox,
    processed_messages,
    provisioning_requests,
    scaling,
    sessions,
    signing_keys,
);
