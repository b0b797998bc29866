// @generated automatically by Diesel CLI.

diesel::table! {
    alerts (id) {
        id -> Int8,
        audience -> Text,
        severity -> Text,
        code -> Text,
        sn -> Nullable<Text>,
        message -> Text,
        detail -> Nullable<Text>,
        occurrences -> Int8,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        resolved_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    cabinet_events (id) {
        id -> Int8,
        sn -> Text,
        kind -> Text,
        from_state -> Nullable<Text>,
        to_state -> Nullable<Text>,
        detail -> Nullable<Text>,
        node_id -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    cabinets (sn) {
        sn -> Text,
        cabinet_type -> Text,
        token_hash -> Text,
        frame_key_sealed -> Text,
        status -> Text,
        liveness -> Text,
        last_boot -> Int8,
        node_id -> Nullable<Text>,
        firmware -> Nullable<Text>,
        lat -> Nullable<Float8>,
        lng -> Nullable<Float8>,
        last_login_at -> Nullable<Timestamp>,
        liveness_changed_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(cabinet_events -> cabinets (sn));

diesel::allow_tables_to_appear_in_same_query!(alerts, cabinet_events, cabinets,);
