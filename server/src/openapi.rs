//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::{
    accounts, acquirers, commands, contact, devices, health, parameters, releases, store, terminal, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "TMS API",
        description = "Terminal management system: the terminal API that payment terminals call, \
                       and the management API behind the tms CLI. Every error response is \
                       `{\"error\": {\"code\", \"message\", \"request_id\"}}` with a stable `code`."
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        health::openapi,
        health::answer_keys,
        health::advance_clock,
        accounts::login,
        accounts::logout,
        accounts::me,
        accounts::activate,
        accounts::password_reset,
        accounts::change_password,
        accounts::create_token,
        accounts::list_tokens,
        accounts::revoke_token,
        accounts::enroll_two_factor,
        accounts::confirm_two_factor,
        accounts::disable_two_factor,
        accounts::invite_operator,
        accounts::list_operators,
        accounts::change_operator,
        accounts::create_order,
        accounts::list_merchants,
        accounts::show_merchant,
        accounts::list_locations,
        accounts::rename_location,
        accounts::list_terminals,
        accounts::invite_user,
        accounts::list_users,
        accounts::show_user,
        accounts::update_user,
        accounts::delete_user,
        accounts::resend_activation,
        accounts::create_group,
        accounts::list_groups,
        accounts::show_group,
        accounts::delete_group,
        accounts::set_grant,
        accounts::add_member,
        accounts::remove_member,
        accounts::list_audit,
        terminal::activation_start,
        terminal::activation_complete,
        terminal::device_login,
        terminal::device_logout,
        terminal::upload_transactions,
        terminal::transaction_history,
        terminal::manual_status,
        commands::issue_command,
        commands::list_device_commands,
        commands::show_command,
        commands::cancel_command,
        commands::issue_group_command,
        commands::show_command_batch,
        commands::list_device_logs,
        commands::download_device_log,
        commands::report_command_result,
        commands::upload_command_log,
        devices::list_missing,
        devices::set_missing_threshold,
        devices::list_devices,
        devices::show_device,
        devices::deactivate_device,
        devices::register_linux_device,
        devices::update_device,
        devices::list_transactions,
        devices::export_transactions,
        releases::create_app,
        releases::list_apps,
        releases::show_app,
        releases::add_key,
        releases::revoke_key,
        releases::publish,
        releases::check,
        releases::list_releases,
        releases::show_release,
        releases::withdraw,
        releases::download,
        releases::device_download,
        releases::device_delta_download,
        parameters::put_schema,
        parameters::get_schema,
        parameters::show,
        parameters::change,
        parameters::history,
        parameters::overview,
        parameters::preview,
        parameters::device,
        parameters::device_diff,
        parameters::weak_password_report,
        acquirers::create,
        acquirers::list,
        acquirers::add_parameters,
        acquirers::revoke_parameters,
        acquirers::add_contract,
        acquirers::list_contracts,
        acquirers::session,
        contact::terminal_contact,
        contact::terminal_feedback,
        contact::create_deployment,
        contact::preview_deployment,
        contact::list_deployments,
        contact::show_deployment,
        contact::cancel_deployment,
        contact::start_rollout,
        contact::rollout_status,
        contact::rollout_history,
        contact::deployment_failures,
        contact::rollout_command,
        contact::create_device_group,
        contact::list_device_groups,
        contact::show_device_group,
        contact::delete_device_group,
        contact::device_plan,
        contact::device_actions,
        webhooks::create_webhook,
        webhooks::list_webhooks,
        webhooks::delete_webhook,
        webhooks::webhook_deliveries,
        store::update_app,
        store::set_icon,
        store::add_screenshot,
        store::remove_screenshot,
        store::grant_app,
        store::ungrant_app,
        store::catalogue,
        store::show_store_app,
        store::install,
        store::uninstall,
        store::icon,
        store::screenshot,
    ),
    components(schemas(
        tms_packages::releases::SignedManifest,
        tms_packages::releases::ReleaseManifest,
        tms_packages::wire::ErrorEnvelope,
        tms_packages::wire::ErrorBody,
        tms_packages::wire::ErrorCode,
        tms_packages::wire::Health,
        tms_packages::wire::Readiness,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "auth", description = "Login, sessions, API tokens and two-step verification"),
        (name = "accounts", description = "Merchants, orders, locations, users, groups and the audit trail"),
        (name = "terminal", description = "What the payment app on a terminal or phone calls"),
        (name = "commands", description = "Remote commands to terminals (lock, unlock, restart, message, log collection) and collected logs"),
        (name = "devices", description = "Devices and transactions, for support and merchants"),
        (name = "releases", description = "Apps, publisher keys, signed releases and their artifacts"),
        (name = "parameters", description = "Parameter schemas, values per level, versions and reports"),
        (name = "acquirers", description = "Acquirers, contracts and their parameter sets"),
        (name = "deployments", description = "Deployments, rollouts, device groups and what a terminal will get"),
        (name = "webhooks", description = "Signed HTTPS notifications of terminal, rollout, command and transaction events"),
        (name = "store", description = "The merchant app store: listings, catalogue, installs and uninstalls"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the management endpoints name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "device",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("the device token from activation"))
                    .build(),
            ),
        );
    }
}

/// The document as committed in `server/openapi.json`.
pub fn document_json() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any change to the API shows up as a diff of `server/openapi.json`.
    /// After an intended change: `UPDATE_OPENAPI=1 cargo test -p tms-server openapi`.
    #[test]
    fn operation_ids_are_unique() {
        let doc = ApiDoc::openapi();
        let mut seen = std::collections::HashSet::new();
        for (path, item) in &doc.paths.paths {
            let ops = [&item.get, &item.put, &item.post, &item.delete, &item.patch];
            for op in ops.into_iter().flatten() {
                let id = op.operation_id.clone().unwrap_or_default();
                assert!(seen.insert(id.clone()), "operationId {id} used twice (at {path})");
            }
        }
    }

    #[test]
    fn every_error_code_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let documented: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("the error codes are an enum in the document")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for code in tms_packages::wire::ErrorCode::ALL {
            assert!(documented.contains(&code.as_str()), "{code} is not in the OpenAPI document");
        }
        assert_eq!(
            doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["$ref"],
            "#/components/schemas/ErrorCode"
        );
    }

    #[test]
    fn document_matches_the_committed_snapshot() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let current = document_json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &current).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == current,
            "the OpenAPI document changed; review and run UPDATE_OPENAPI=1 cargo test -p tms-server openapi\n{current}"
        );
    }
}
