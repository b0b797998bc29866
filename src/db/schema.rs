// @generated automatically by Diesel CLI.

diesel::table! {
    accounts (user_id) {
        user_id -> Int8,
        channels -> Text,
        debt_fen -> Int8,
        blocked -> Bool,
        blocked_reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

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
        subject -> Nullable<Text>,
    }
}

diesel::table! {
    bill_cases (id) {
        id -> Int8,
        channel -> Text,
        day -> Text,
        kind -> Text,
        out_order_no -> Text,
        subject -> Text,
        transaction_id -> Nullable<Text>,
        out_refund_no -> Nullable<Text>,
        heft_fen -> Nullable<Int8>,
        bill_fen -> Nullable<Int8>,
        detail -> Text,
        file_id -> Nullable<Int8>,
        status -> Text,
        resolution -> Nullable<Text>,
        note -> Nullable<Text>,
        resolved_by -> Nullable<Text>,
        created_at -> Timestamp,
        resolved_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    bill_files (id) {
        id -> Int8,
        channel -> Text,
        day -> Text,
        sha256 -> Text,
        size_bytes -> Int8,
        row_count -> Int8,
        totals -> Nullable<Text>,
        raw -> Binary,
        fetched_at -> Timestamp,
    }
}

diesel::table! {
    bill_rows (id) {
        id -> Int8,
        file_id -> Int8,
        channel -> Text,
        day -> Text,
        kind -> Text,
        transaction_id -> Text,
        out_order_no -> Text,
        amount_fen -> Int8,
        fee_fen -> Int8,
        status -> Text,
        at -> Timestamp,
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
    cabinet_types (name) {
        name -> Text,
        sensor_channels -> Int4,
        temp_min_c -> Float8,
        temp_max_c -> Float8,
        temp_alert_after_s -> Int8,
        created_at -> Timestamp,
        updated_at -> Timestamp,
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
        address -> Nullable<Text>,
        config_version -> Int8,
        config_acked_version -> Int8,
        tags_version -> Int8,
        tags_acked_version -> Int8,
        owner_epoch -> Int8,
    }
}

diesel::table! {
    charged_lines (order_id, lane) {
        order_id -> Int8,
        lane -> Text,
        product_id -> Int8,
        product_name -> Text,
        qty -> Int8,
        unit_fen -> Int8,
        amount_fen -> Int8,
    }
}

diesel::table! {
    commands (id) {
        id -> Text,
        sn -> Text,
        kind -> Text,
        session_id -> Nullable<Int8>,
        body -> Text,
        status -> Text,
        attempts -> Int4,
        error -> Nullable<Text>,
        result -> Nullable<Text>,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    consumed_messages (consumer, message_id) {
        consumer -> Text,
        message_id -> Text,
        consumed_at -> Timestamp,
    }
}

diesel::table! {
    daily_settlement (day, sn, product_id) {
        day -> Text,
        sn -> Text,
        product_id -> Int8,
        product_name -> Text,
        orders -> Int8,
        units_sold -> Int8,
        gross_fen -> Int8,
        refunds_fen -> Int8,
        fees_fen -> Int8,
        net_fen -> Int8,
        debt_opened_fen -> Int8,
        debt_recovered_fen -> Int8,
        loss_units -> Int8,
        loss_fen -> Int8,
        reviews -> Int8,
        written_at -> Timestamp,
    }
}

diesel::table! {
    daily_totals (day) {
        day -> Text,
        orders -> Int8,
        units_sold -> Int8,
        gross_fen -> Int8,
        refunds_fen -> Int8,
        fees_fen -> Int8,
        net_fen -> Int8,
        debt_opened_fen -> Int8,
        debt_recovered_fen -> Int8,
        loss_units -> Int8,
        loss_fen -> Int8,
        reviews -> Int8,
        written_at -> Timestamp,
    }
}

diesel::table! {
    debt_ledger (id) {
        id -> Int8,
        user_id -> Int8,
        order_id -> Int8,
        delta_fen -> Int8,
        at -> Timestamp,
    }
}

diesel::table! {
    lane_health (sn, lane, day) {
        sn -> Text,
        lane -> Text,
        day -> Text,
        noise_g -> Nullable<Float8>,
        drift_g -> Float8,
        moves -> Int4,
        baseline_g -> Nullable<Float8>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    lanes (sn, code) {
        sn -> Text,
        code -> Text,
        door -> Int4,
        position -> Int4,
        name -> Text,
        channel -> Int4,
        capacity -> Int4,
        threshold -> Int4,
        product_id -> Nullable<Int8>,
        stock -> Int4,
        zero_counts -> Nullable<Int8>,
        counts_per_g -> Nullable<Float8>,
        calibrated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    operators (id) {
        id -> Int8,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        active -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        last_login_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    order_lines (order_id, lane) {
        order_id -> Int8,
        lane -> Text,
        product_id -> Int8,
        product_name -> Text,
        qty -> Int8,
        unit_fen -> Int8,
        amount_fen -> Int8,
    }
}

diesel::table! {
    orders (id) {
        id -> Int8,
        user_id -> Int8,
        sn -> Text,
        door -> Int4,
        channel -> Text,
        status -> Text,
        out_order_no -> Text,
        session_id -> Nullable<Int8>,
        cap_fen -> Int8,
        total_fen -> Nullable<Int8>,
        paid_fen -> Nullable<Int8>,
        debt_fen -> Int8,
        before_g -> Nullable<Text>,
        after_g -> Nullable<Text>,
        notices -> Text,
        cancel_reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        authorized_at -> Nullable<Timestamp>,
        opened_at -> Nullable<Timestamp>,
        closed_at -> Nullable<Timestamp>,
        settled_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        message_id -> Text,
        topic -> Text,
        payload -> Text,
        created_at -> Timestamp,
        deliver_at -> Timestamp,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamp,
        last_error -> Nullable<Text>,
        done_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    payment_events (id) {
        id -> Int8,
        channel -> Text,
        event_id -> Text,
        event_type -> Text,
        out_order_no -> Nullable<Text>,
        resource -> Text,
        raw -> Text,
        outcome -> Text,
        received_at -> Timestamp,
    }
}

diesel::table! {
    payments (out_order_no) {
        out_order_no -> Text,
        channel -> Text,
        user_id -> Int8,
        state -> Text,
        cap_fen -> Int8,
        amount_fen -> Nullable<Int8>,
        platform_order_id -> Nullable<Text>,
        payer_id -> Nullable<Text>,
        out_trade_no -> Nullable<Text>,
        transaction_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    products (id) {
        id -> Int8,
        name -> Text,
        barcode -> Text,
        unit_g -> Float8,
        tolerance_g -> Float8,
        price_fen -> Int8,
        image_url -> Nullable<Text>,
        active -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    reconcile_runs (job, day) {
        job -> Text,
        day -> Text,
        status -> Text,
        attempts -> Int4,
        node -> Text,
        summary -> Nullable<Text>,
        last_error -> Nullable<Text>,
        started_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    refunds (out_refund_no) {
        out_refund_no -> Text,
        order_id -> Int8,
        out_order_no -> Text,
        case_id -> Nullable<Int8>,
        amount_fen -> Int8,
        reason -> Text,
        status -> Text,
        refund_id -> Nullable<Text>,
        last_error -> Nullable<Text>,
        requested_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    restock_tasks (id) {
        id -> Int8,
        sn -> Text,
        status -> Text,
        wanted -> Text,
        added -> Nullable<Text>,
        session_id -> Nullable<Int8>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        closed_at -> Nullable<Timestamp>,
        closed_by -> Nullable<Text>,
    }
}

diesel::table! {
    review_cases (id) {
        id -> Int8,
        order_id -> Int8,
        kind -> Text,
        status -> Text,
        reasons -> Text,
        opened_by -> Text,
        resolution -> Nullable<Text>,
        resolved_by -> Nullable<Text>,
        created_at -> Timestamp,
        resolved_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Int8,
        sn -> Text,
        kind -> Text,
        door -> Nullable<Int4>,
        started_by -> Text,
        node_id -> Text,
        started_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
        outcome -> Nullable<Text>,
        detail -> Nullable<Text>,
        evidence -> Nullable<Text>,
    }
}

diesel::table! {
    stock_ledger (id) {
        id -> Int8,
        sn -> Text,
        lane -> Text,
        product_id -> Nullable<Int8>,
        delta -> Int4,
        stock_after -> Int4,
        reason -> Text,
        order_id -> Nullable<Int8>,
        session_id -> Nullable<Int8>,
        task_id -> Nullable<Int8>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    stock_findings (id) {
        id -> Int8,
        stocktake_id -> Int8,
        day -> Text,
        sn -> Text,
        lane -> Text,
        product_id -> Nullable<Int8>,
        kind -> Text,
        units -> Int4,
        value_fen -> Int8,
        charged_fen -> Int8,
        session_id -> Nullable<Int8>,
        order_id -> Nullable<Int8>,
        user_id -> Nullable<Int8>,
        from_at -> Nullable<Timestamp>,
        to_at -> Nullable<Timestamp>,
        from_g -> Nullable<Float8>,
        to_g -> Nullable<Float8>,
    }
}

diesel::table! {
    stocktake_lanes (id) {
        id -> Int8,
        day -> Text,
        sn -> Text,
        lane -> Text,
        product_id -> Nullable<Int8>,
        status -> Text,
        unreadable -> Nullable<Text>,
        book -> Int4,
        implied -> Nullable<Int4>,
        difference -> Int4,
        night_g -> Nullable<Float8>,
        taken_at -> Timestamp,
        trace -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        channel -> Text,
        platform_uid -> Text,
        unionid -> Nullable<Text>,
        created_at -> Timestamp,
        last_login_at -> Timestamp,
    }
}

diesel::table! {
    weight_log (id) {
        id -> Int8,
        sn -> Text,
        session_id -> Nullable<Int8>,
        kind -> Text,
        recorded_at -> Timestamp,
        device_ts -> Nullable<Int8>,
        counts -> Text,
        grams -> Nullable<Text>,
    }
}

diesel::joinable!(accounts -> users (user_id));
diesel::joinable!(bill_cases -> bill_files (file_id));
diesel::joinable!(bill_rows -> bill_files (file_id));
diesel::joinable!(cabinet_events -> cabinets (sn));
diesel::joinable!(charged_lines -> orders (order_id));
diesel::joinable!(commands -> cabinets (sn));
diesel::joinable!(commands -> sessions (session_id));
diesel::joinable!(debt_ledger -> orders (order_id));
diesel::joinable!(lane_health -> cabinets (sn));
diesel::joinable!(stock_findings -> stocktake_lanes (stocktake_id));
diesel::joinable!(lanes -> cabinets (sn));
diesel::joinable!(lanes -> products (product_id));
diesel::joinable!(order_lines -> orders (order_id));
diesel::joinable!(orders -> cabinets (sn));
diesel::joinable!(orders -> payments (out_order_no));
diesel::joinable!(orders -> sessions (session_id));
diesel::joinable!(orders -> users (user_id));
diesel::joinable!(payments -> users (user_id));
diesel::joinable!(refunds -> orders (order_id));
diesel::joinable!(refunds -> payments (out_order_no));
diesel::joinable!(refunds -> review_cases (case_id));
diesel::joinable!(restock_tasks -> cabinets (sn));
diesel::joinable!(review_cases -> orders (order_id));
diesel::joinable!(sessions -> cabinets (sn));

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    alerts,
    bill_cases,
    bill_files,
    bill_rows,
    cabinet_events,
    cabinet_types,
    cabinets,
    charged_lines,
    commands,
    consumed_messages,
    daily_settlement,
    daily_totals,
    debt_ledger,
    lane_health,
    lanes,
    operators,
    order_lines,
    orders,
    outbox,
    payment_events,
    payments,
    products,
    reconcile_runs,
    refunds,
    restock_tasks,
    review_cases,
    sessions,
    stock_findings,
    stock_ledger,
    stocktake_lanes,
    users,
    weight_log,
);
