// One schema for both backends: column types are the ones SQLite and
// PostgreSQL share through diesel's MultiBackend.

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        occurred_at -> Timestamp,
        actor -> Text,
        action -> Text,
        subject -> Text,
        detail -> Text,
        actor_user_id -> Nullable<BigInt>,
        merchant_id -> Nullable<BigInt>,
        source_ip -> Nullable<Text>,
    }
}

diesel::table! {
    merchants (id) {
        id -> BigInt,
        name -> Text,
        contact_email -> Text,
        status -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    locations (id) {
        id -> BigInt,
        merchant_id -> BigInt,
        name -> Text,
        address_line1 -> Text,
        address_line2 -> Text,
        postal_code -> Text,
        city -> Text,
        country -> Text,
        address_key -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    orders (id) {
        id -> BigInt,
        merchant_id -> BigInt,
        location_id -> BigInt,
        created_by -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    terminals (id) {
        id -> BigInt,
        merchant_id -> BigInt,
        location_id -> BigInt,
        order_id -> BigInt,
        serial -> Text,
        model -> Text,
        registered_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        password_hash -> Nullable<Text>,
        kind -> Text,
        operator_role -> Nullable<Text>,
        merchant_id -> Nullable<BigInt>,
        is_admin -> Bool,
        permissions -> Text,
        status -> Text,
        totp_secret -> Nullable<Text>,
        totp_enabled -> Bool,
        totp_last_step -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        language -> Nullable<Text>,
    }
}

diesel::table! {
    recovery_codes (id) {
        id -> BigInt,
        user_id -> BigInt,
        code_hash -> Text,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    user_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        kind -> Text,
        name -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    activation_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        token_hash -> Text,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    user_groups (id) {
        id -> BigInt,
        merchant_id -> BigInt,
        name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    group_members (group_id, user_id) {
        group_id -> BigInt,
        user_id -> BigInt,
    }
}

diesel::table! {
    group_grants (group_id, location_id) {
        group_id -> BigInt,
        location_id -> BigInt,
        permissions -> Text,
    }
}

diesel::table! {
    login_failures (id) {
        id -> BigInt,
        throttle_key -> Text,
        failed_at -> Timestamp,
    }
}

diesel::table! {
    devices (id) {
        id -> BigInt,
        merchant_id -> BigInt,
        location_id -> BigInt,
        terminal_id -> Nullable<BigInt>,
        app -> Text,
        name -> Text,
        hardware_id -> Text,
        model -> Text,
        status -> Text,
        token_hash -> Text,
        replaces_device_id -> Nullable<BigInt>,
        replaced_by_device_id -> Nullable<BigInt>,
        activated_by -> BigInt,
        activated_at -> Timestamp,
        deactivated_at -> Nullable<Timestamp>,
        kind -> Text,
    }
}

diesel::table! {
    device_contacts (device_id) {
        device_id -> BigInt,
        contacted_at -> Timestamp,
    }
}

diesel::table! {
    device_sessions (id) {
        id -> BigInt,
        device_id -> BigInt,
        user_id -> BigInt,
        started_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    activation_tickets (id) {
        id -> BigInt,
        ticket_hash -> Text,
        user_id -> BigInt,
        merchant_id -> BigInt,
        app -> Text,
        hardware_id -> Text,
        model -> Text,
        terminal_id -> Nullable<BigInt>,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    transactions (id) {
        id -> BigInt,
        merchant_id -> BigInt,
        device_id -> BigInt,
        original_device_id -> BigInt,
        hardware_id -> Text,
        location_id -> BigInt,
        terminal_tx_id -> Text,
        occurred_at -> Timestamp,
        tx_type -> Text,
        amount_minor -> BigInt,
        currency -> Text,
        acquirer -> Text,
        masked_card -> Text,
        status -> Text,
        manual_status -> Nullable<Text>,
        manual_set_by -> Nullable<BigInt>,
        manual_set_at -> Nullable<Timestamp>,
        receipt_printed -> Bool,
        uploaded_at -> Timestamp,
    }
}

diesel::table! {
    apps (id) {
        id -> Text,
        name -> Text,
        kind -> Text,
        visibility -> Text,
        created_at -> Timestamp,
        created_by -> BigInt,
        summary -> Text,
        description -> Text,
        category -> Text,
        icon_sha256 -> Nullable<Text>,
        icon_content_type -> Nullable<Text>,
    }
}

diesel::table! {
    app_screenshots (id) {
        id -> BigInt,
        app_id -> Text,
        sha256 -> Text,
        content_type -> Text,
        added_at -> Timestamp,
    }
}

diesel::table! {
    app_merchants (app_id, merchant_id) {
        app_id -> Text,
        merchant_id -> BigInt,
        granted_at -> Timestamp,
        granted_by -> BigInt,
    }
}

diesel::table! {
    publisher_keys (id) {
        id -> BigInt,
        app_id -> Text,
        key_id -> Text,
        public_key -> Text,
        name -> Text,
        added_at -> Timestamp,
        added_by -> BigInt,
        revoked_at -> Nullable<Timestamp>,
        revoked_by -> Nullable<BigInt>,
    }
}

diesel::table! {
    releases (id) {
        id -> BigInt,
        app_id -> Text,
        kind -> Text,
        version -> Text,
        version_code -> BigInt,
        artifact_sha256 -> Text,
        artifact_size -> BigInt,
        models -> Text,
        min_firmware -> Nullable<Text>,
        release_notes -> Text,
        signed_manifest -> Text,
        key_id -> Text,
        published_at -> Timestamp,
        published_by -> BigInt,
        withdrawn_at -> Nullable<Timestamp>,
        withdrawn_by -> Nullable<BigInt>,
    }
}

diesel::table! {
    parameter_schemas (app_id, version) {
        app_id -> Text,
        version -> BigInt,
        schema_json -> Text,
        created_at -> Timestamp,
        created_by -> BigInt,
    }
}

diesel::table! {
    parameter_set_versions (id) {
        id -> BigInt,
        app_id -> Text,
        level -> Text,
        scope_id -> BigInt,
        version -> BigInt,
        sha256 -> Text,
        created_at -> Timestamp,
        created_by -> BigInt,
        created_by_email -> Text,
        reason -> Text,
        sealed_with -> Nullable<Text>,
    }
}

diesel::table! {
    acquirers (id) {
        id -> Text,
        name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    acquirer_contracts (id) {
        id -> BigInt,
        acquirer_id -> Text,
        merchant_id -> BigInt,
        location_id -> Nullable<BigInt>,
        device_id -> Nullable<BigInt>,
        acquirer_merchant_id -> Text,
        acquirer_terminal_id -> Text,
        valid_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    acquirer_parameter_sets (id) {
        id -> BigInt,
        acquirer_id -> Text,
        version -> BigInt,
        document -> Text,
        valid_until -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    acquirer_sessions (id) {
        id -> BigInt,
        device_id -> BigInt,
        acquirer_id -> Text,
        outcome -> Text,
        parameter_version -> Nullable<BigInt>,
        occurred_at -> Timestamp,
    }
}

diesel::table! {
    release_deltas (release_id, base_release_id) {
        release_id -> BigInt,
        base_release_id -> BigInt,
        base_sha256 -> Text,
        status -> Text,
        sha256 -> Nullable<Text>,
        size -> Nullable<BigInt>,
        reason -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    blob_orphans (sha256) {
        sha256 -> Text,
        marked_at -> Timestamp,
    }
}

diesel::table! {
    server_keys (key_id) {
        key_id -> Text,
        private_pem -> Text,
        public_key -> Text,
        created_at -> Timestamp,
        retired_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(publisher_keys -> apps (app_id));
diesel::joinable!(releases -> apps (app_id));
diesel::joinable!(device_sessions -> devices (device_id));
diesel::joinable!(device_inventory -> devices (device_id));
diesel::joinable!(device_contacts -> devices (device_id));
diesel::joinable!(ddi_targets -> devices (device_id));
diesel::joinable!(deployment_actions -> devices (device_id));
diesel::joinable!(device_sessions -> users (user_id));
diesel::joinable!(locations -> merchants (merchant_id));
diesel::joinable!(terminals -> locations (location_id));
diesel::joinable!(users -> merchants (merchant_id));
diesel::joinable!(user_tokens -> users (user_id));
diesel::joinable!(group_members -> user_groups (group_id));
diesel::joinable!(group_members -> users (user_id));
diesel::joinable!(group_grants -> user_groups (group_id));

diesel::table! {
    device_inventory (device_id) {
        device_id -> BigInt,
        firmware -> Text,
        state_json -> Text,
        digest -> Text,
        wifi -> Bool,
        time_zone -> Text,
        utc_offset_minutes -> Integer,
        free_storage_bytes -> BigInt,
        reported_at -> Timestamp,
    }
}

diesel::table! {
    device_groups (id) {
        id -> BigInt,
        name -> Text,
        filter -> Nullable<Text>,
        created_at -> Timestamp,
        created_by -> BigInt,
    }
}

diesel::table! {
    device_group_members (group_id, device_id) {
        group_id -> BigInt,
        device_id -> BigInt,
    }
}

diesel::table! {
    deployments (id) {
        id -> BigInt,
        app_id -> Text,
        release_id -> Nullable<BigInt>,
        target_kind -> Text,
        target_id -> Nullable<BigInt>,
        action -> Text,
        pinned -> Bool,
        starts_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        window_start_min -> Nullable<Integer>,
        window_end_min -> Nullable<Integer>,
        wifi_only -> Bool,
        status -> Text,
        rollback_of -> Nullable<BigInt>,
        scope_seed -> Nullable<BigInt>,
        scope_bp -> Nullable<Integer>,
        created_at -> Timestamp,
        created_by -> BigInt,
        created_by_email -> Text,
        origin -> Text,
        merchant_id -> Nullable<BigInt>,
        retry_delays -> Text,
        max_postpones -> Integer,
        confirmation_required -> Bool,
    }
}

diesel::table! {
    deployment_devices (deployment_id, device_id) {
        deployment_id -> BigInt,
        device_id -> BigInt,
    }
}

diesel::table! {
    rollouts (id) {
        id -> BigInt,
        deployment_id -> BigInt,
        stages -> Text,
        current_stage -> Integer,
        success_bp -> Integer,
        max_failures -> Integer,
        max_failures_is_bp -> Bool,
        failures_forgiven -> Integer,
        auto_advance -> Bool,
        status -> Text,
        status_reason -> Nullable<Text>,
        rollback_deployment_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        reached_devices -> Nullable<BigInt>,
        status_reason_code -> Nullable<Text>,
    }
}

diesel::table! {
    deployment_actions (deployment_id, device_id) {
        deployment_id -> BigInt,
        device_id -> BigInt,
        status -> Text,
        progress_percent -> Nullable<Integer>,
        error_code -> Nullable<Text>,
        message -> Nullable<Text>,
        updated_at -> Timestamp,
        attempts -> Integer,
        postponements -> Integer,
        offered_at -> Nullable<Timestamp>,
        deadline_at -> Nullable<Timestamp>,
        retry_at -> Nullable<Timestamp>,
        failed_for_good -> Bool,
        download -> Nullable<Text>,
    }
}

diesel::table! {
    action_events (id) {
        id -> BigInt,
        deployment_id -> BigInt,
        device_id -> BigInt,
        app_id -> Text,
        status -> Text,
        progress_percent -> Nullable<Integer>,
        error_code -> Nullable<Text>,
        message -> Nullable<Text>,
        occurred_at -> Timestamp,
        download -> Nullable<Text>,
    }
}

diesel::table! {
    contact_sequence (id) {
        id -> Integer,
        seq -> BigInt,
    }
}

diesel::table! {
    contact_changes (seq) {
        seq -> BigInt,
        scope -> Text,
        scope_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    device_commands (id) {
        id -> BigInt,
        device_id -> BigInt,
        kind -> Text,
        message -> Nullable<Text>,
        log_name -> Nullable<Text>,
        log_since -> Nullable<Timestamp>,
        log_until -> Nullable<Timestamp>,
        log_max_bytes -> Nullable<BigInt>,
        state -> Text,
        issued_by -> Text,
        batch_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        delivered_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        error_code -> Nullable<Text>,
        result_message -> Nullable<Text>,
    }
}

diesel::table! {
    command_batches (id) {
        id -> BigInt,
        target -> Text,
        kind -> Text,
        message -> Nullable<Text>,
        log_name -> Nullable<Text>,
        log_since -> Nullable<Timestamp>,
        log_until -> Nullable<Timestamp>,
        log_max_bytes -> Nullable<BigInt>,
        issued_by -> Text,
        merchant_scope -> Nullable<BigInt>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        next_device_id -> BigInt,
        queued -> BigInt,
        fanned_out_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    device_logs (id) {
        id -> BigInt,
        device_id -> BigInt,
        command_id -> BigInt,
        name -> Text,
        sha256 -> Text,
        size -> BigInt,
        content_encoding -> Nullable<Text>,
        uploaded_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    device_health (device_id) {
        device_id -> BigInt,
        health_json -> Text,
        free_storage_bytes -> BigInt,
        reported_at -> Timestamp,
    }
}

diesel::table! {
    missing_devices (device_id) {
        device_id -> BigInt,
        merchant_id -> BigInt,
        last_contact_at -> Timestamp,
        missing_since -> Timestamp,
    }
}

diesel::table! {
    merchant_missing_thresholds (merchant_id) {
        merchant_id -> BigInt,
        hours -> BigInt,
    }
}

diesel::joinable!(missing_devices -> devices (device_id));
diesel::table! {
    webhook_subscriptions (id) {
        id -> BigInt,
        merchant_id -> Nullable<BigInt>,
        url -> Text,
        events -> Text,
        secret -> Text,
        created_by -> BigInt,
        created_at -> Timestamp,
        deleted_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> BigInt,
        subscription_id -> BigInt,
        event_id -> Text,
        event -> Text,
        body -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_status_code -> Nullable<Integer>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        delivered_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(webhook_deliveries -> webhook_subscriptions (subscription_id));
diesel::table! {
    device_contact_hours (device_id) {
        device_id -> BigInt,
        hour -> BigInt,
    }
}

diesel::table! {
    contact_minutes (minute) {
        minute -> BigInt,
        contacts -> BigInt,
    }
}

diesel::table! {
    rollout_stage_counts (rollout_id, minute, stage) {
        rollout_id -> BigInt,
        minute -> BigInt,
        stage -> Integer,
        counted_at -> Timestamp,
        devices -> BigInt,
        pending -> BigInt,
        in_progress -> BigInt,
        installed -> BigInt,
        failed -> BigInt,
        timed_out -> BigInt,
        failed_for_good -> BigInt,
        postponed -> BigInt,
    }
}

diesel::joinable!(rollout_stage_counts -> rollouts (rollout_id));
diesel::joinable!(device_contact_hours -> devices (device_id));
diesel::joinable!(device_commands -> devices (device_id));
diesel::joinable!(device_logs -> device_commands (command_id));

diesel::table! {
    ddi_targets (device_id) {
        device_id -> BigInt,
        installed_deployment_id -> Nullable<BigInt>,
        installed_release_id -> Nullable<BigInt>,
        action_deployment_id -> Nullable<BigInt>,
        auto_confirm -> Bool,
        confirmed_deployment_id -> Nullable<BigInt>,
        attributes_json -> Text,
        attributes_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    artifact_digests (sha256) {
        sha256 -> Text,
        sha1 -> Text,
        md5 -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    ddi_targets,
    artifact_digests,
    audit_events,
    contact_minutes,
    rollout_stage_counts,
    merchants,
    locations,
    orders,
    terminals,
    users,
    recovery_codes,
    user_tokens,
    activation_tokens,
    user_groups,
    group_members,
    group_grants,
    login_failures,
    devices,
    device_contacts,
    device_sessions,
    activation_tickets,
    transactions,
    apps,
    publisher_keys,
    releases,
    parameter_schemas,
    parameter_set_versions,
    acquirers,
    acquirer_contracts,
    acquirer_parameter_sets,
    acquirer_sessions,
    server_keys,
    device_inventory,
    device_groups,
    device_group_members,
    deployments,
    deployment_devices,
    rollouts,
    deployment_actions,
    action_events,
    contact_sequence,
    contact_changes,
    app_screenshots,
    app_merchants,
    release_deltas,
    device_commands,
    command_batches,
    device_logs,
    device_health,
    missing_devices,
    merchant_missing_thresholds,
    webhook_subscriptions,
    webhook_deliveries,
    device_contact_hours,
);
