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
    profiles (id) {
        id -> Uuid,
        email -> Nullable<Text>,
        display_name -> Text,
        avatar_url -> Nullable<Text>,
        locale -> Nullable<Text>,
        timezone -> Nullable<Text>,
        roles -> Array<Nullable<Text>>,
        status -> Text,
        email_verified -> Bool,
        revision -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(outbox, processed_messages, profiles,);
