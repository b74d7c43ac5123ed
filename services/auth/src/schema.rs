// @generated automatically by Diesel CLI.

diesel::table! {
    login_throttle (key) {
        key -> Text,
        failures -> Int4,
        window_started_at -> Timestamptz,
    }
}

diesel::table! {
    one_time_tokens (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        purpose -> Text,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
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
    processed_messages (consumer, message_id) {
        consumer -> Text,
        message_id -> Text,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        session_id -> Uuid,
        issued_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
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

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Nullable<Text>,
        display_name -> Text,
        password_hash -> Nullable<Text>,
        roles -> Array<Nullable<Text>>,
        status -> Text,
        email_verified -> Bool,
        roles_revision -> Int8,
        status_revision -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(one_time_tokens -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    login_throttle,
    one_time_tokens,
    outbox,
    processed_messages,
    refresh_tokens,
    sessions,
    signing_keys,
    users,
);
