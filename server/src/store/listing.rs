//! The operator's side of the store: an app's visibility and listing (name,
//! summary, description, category, icon and screenshots) and the merchants a
//! private app is offered to.

use diesel::prelude::*;
use serde_json::json;
use tms_packages::wire::releases::AppView;
use tms_packages::wire::store::UpdateAppRequest;

use crate::accounts::access::Actor;
use crate::contact::changes::{self, Scope};
use crate::db::schema::{app_merchants, app_screenshots, apps, deployments, merchants};
use crate::db::{DbConnection, audit};
use crate::error::{Error, ErrorCode};
use crate::releases::{AppRow, PUBLISHERS, VISIBILITIES, app_view, find_app};
use crate::time::now;

/// Icons and screenshots are small pictures, not artifacts.
pub const IMAGE_LIMIT_BYTES: usize = 2 * 1024 * 1024;
/// A listing shows a handful of screenshots.
const MAX_SCREENSHOTS: i64 = 8;

fn text_field(field: &str, value: &str, max_chars: usize, may_be_empty: bool) -> Result<String, Error> {
    let value = value.trim();
    if (!may_be_empty && value.is_empty()) || value.chars().count() > max_chars {
        let least = if may_be_empty { 0 } else { 1 };
        return Err(Error::invalid(field, format!("{least} to {max_chars} characters")));
    }
    Ok(value.to_owned())
}

pub fn update_app(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    request: &UpdateAppRequest,
) -> Result<AppView, Error> {
    actor.require_operator(PUBLISHERS)?;
    let name = request.name.as_deref().map(|v| text_field("name", v, 100, false)).transpose()?;
    let summary = request.summary.as_deref().map(|v| text_field("summary", v, 200, true)).transpose()?;
    let description =
        request.description.as_deref().map(|v| text_field("description", v, 10_000, true)).transpose()?;
    let category = request.category.as_deref().map(|v| text_field("category", v, 40, true)).transpose()?;
    if let Some(v) = &request.visibility
        && !VISIBILITIES.contains(&v.as_str())
    {
        return Err(Error::invalid("visibility", "system, store or private"));
    }
    crate::db::write_tx(conn, |conn| {
        let before = find_app(conn, app_id)?;
        if request.visibility.is_some() && before.kind != "app" {
            return Err(Error::invalid("visibility", "firmware is never in the store"));
        }
        diesel::update(apps::table.find(app_id))
            .set((
                apps::name.eq(name.as_deref().unwrap_or(&before.name)),
                apps::visibility.eq(request.visibility.as_deref().unwrap_or(&before.visibility)),
                apps::summary.eq(summary.as_deref().unwrap_or(&before.summary)),
                apps::description.eq(description.as_deref().unwrap_or(&before.description)),
                apps::category.eq(category.as_deref().unwrap_or(&before.category)),
            ))
            .execute(conn)?;
        audit::record(conn, &actor.audit("app.update", &format!("app:{app_id}"), None, &json!(request)))?;
        // Visibility decides whether the operator's deployments of the app
        // install it or only update it.
        if request.visibility.as_ref().is_some_and(|v| *v != before.visibility) {
            if request.visibility.as_deref() == Some("system") {
                // A system app is the operator's alone: merchants' pending
                // installs and removals of it end.
                end_store_requests(conn, app_id, None, false)?;
            }
            changes::record(conn, &[Scope::Deployments, Scope::Everyone])?;
        }
        let app = find_app(conn, app_id)?;
        Ok(app_view(conn, &app)?)
    })
}

/// Records an icon already stored as a blob.
pub fn set_icon(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    sha256: &str,
    content_type: &str,
) -> Result<AppView, Error> {
    actor.require_operator(PUBLISHERS)?;
    crate::db::write_tx(conn, |conn| {
        find_app(conn, app_id)?;
        diesel::update(apps::table.find(app_id))
            .set((apps::icon_sha256.eq(sha256), apps::icon_content_type.eq(content_type)))
            .execute(conn)?;
        audit::record(
            conn,
            &actor.audit("app.icon", &format!("app:{app_id}"), None, &json!({"sha256": sha256})),
        )?;
        let app = find_app(conn, app_id)?;
        Ok(app_view(conn, &app)?)
    })
}

/// Checks the caller and the app before an image is read and stored.
pub fn check_listing_editable(conn: &mut DbConnection, actor: &Actor, app_id: &str) -> Result<(), Error> {
    actor.require_operator(PUBLISHERS)?;
    find_app(conn, app_id)?;
    Ok(())
}

pub fn add_screenshot(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    sha256: &str,
    content_type: &str,
) -> Result<AppView, Error> {
    actor.require_operator(PUBLISHERS)?;
    crate::db::write_tx(conn, |conn| {
        find_app(conn, app_id)?;
        let count: i64 =
            app_screenshots::table.filter(app_screenshots::app_id.eq(app_id)).count().get_result(conn)?;
        if count >= MAX_SCREENSHOTS {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("an app has at most {MAX_SCREENSHOTS} screenshots; remove one first"),
            ));
        }
        diesel::insert_into(app_screenshots::table)
            .values((
                app_screenshots::app_id.eq(app_id),
                app_screenshots::sha256.eq(sha256),
                app_screenshots::content_type.eq(content_type),
                app_screenshots::added_at.eq(now()),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            &actor.audit("app.screenshot.add", &format!("app:{app_id}"), None, &json!({"sha256": sha256})),
        )?;
        let app = find_app(conn, app_id)?;
        Ok(app_view(conn, &app)?)
    })
}

pub fn remove_screenshot(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    screenshot_id: i64,
) -> Result<AppView, Error> {
    actor.require_operator(PUBLISHERS)?;
    crate::db::write_tx(conn, |conn| {
        find_app(conn, app_id)?;
        let removed = diesel::delete(
            app_screenshots::table
                .filter(app_screenshots::app_id.eq(app_id))
                .filter(app_screenshots::id.eq(screenshot_id)),
        )
        .execute(conn)?;
        if removed == 0 {
            return Err(Error::not_found("screenshot"));
        }
        audit::record(
            conn,
            &actor.audit(
                "app.screenshot.remove",
                &format!("app:{app_id}"),
                None,
                &json!({"screenshot_id": screenshot_id}),
            ),
        )?;
        let app = find_app(conn, app_id)?;
        Ok(app_view(conn, &app)?)
    })
}

/// Offers a private app to a merchant (or withdraws the offer). Terminals
/// that installed it keep it; the merchant can still uninstall it.
pub fn grant(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    merchant_id: i64,
    granted: bool,
) -> Result<AppView, Error> {
    actor.require_operator(PUBLISHERS)?;
    crate::db::write_tx(conn, |conn| {
        find_app(conn, app_id)?;
        let exists: i64 = merchants::table.filter(merchants::id.eq(merchant_id)).count().get_result(conn)?;
        if exists == 0 {
            return Err(Error::not_found("merchant"));
        }
        let row = app_merchants::table.find((app_id, merchant_id));
        let present: i64 = row.count().get_result(conn)?;
        match (granted, present > 0) {
            (true, false) => {
                diesel::insert_into(app_merchants::table)
                    .values((
                        app_merchants::app_id.eq(app_id),
                        app_merchants::merchant_id.eq(merchant_id),
                        app_merchants::granted_at.eq(now()),
                        app_merchants::granted_by.eq(actor.user_id),
                    ))
                    .execute(conn)?;
            }
            (false, true) => {
                diesel::delete(row).execute(conn)?;
                // Installs not delivered yet end with the offer.
                end_store_requests(conn, app_id, Some(merchant_id), true)?;
                changes::record(conn, &[Scope::Deployments, Scope::Merchant(merchant_id)])?;
            }
            _ => {}
        }
        audit::record(
            conn,
            &actor.audit(
                if granted { "app.grant" } else { "app.ungrant" },
                &format!("app:{app_id}"),
                Some(merchant_id),
                &json!({"merchant_id": merchant_id}),
            ),
        )?;
        let app = find_app(conn, app_id)?;
        Ok(app_view(conn, &app)?)
    })
}

/// Marks the app's active store requests superseded: every merchant's, or
/// one merchant's; installs only, or removals too.
fn end_store_requests(
    conn: &mut DbConnection,
    app_id: &str,
    merchant_id: Option<i64>,
    installs_only: bool,
) -> Result<(), Error> {
    let mut query = diesel::update(deployments::table)
        .filter(deployments::origin.eq("store"))
        .filter(deployments::app_id.eq(app_id))
        .filter(deployments::status.eq("active"))
        .into_boxed();
    if let Some(m) = merchant_id {
        query = query.filter(deployments::merchant_id.eq(m));
    }
    if installs_only {
        query = query.filter(deployments::release_id.is_not_null());
    }
    query.set(deployments::status.eq("superseded")).execute(conn)?;
    Ok(())
}

/// Whether a merchant's store offers the app: store apps, and private apps
/// granted to it.
pub fn offered_to(conn: &mut DbConnection, app: &AppRow, merchant_id: i64) -> Result<bool, Error> {
    Ok(match app.visibility.as_str() {
        "store" => app.kind == "app",
        "private" => {
            let granted: i64 = app_merchants::table.find((&app.id, merchant_id)).count().get_result(conn)?;
            granted > 0 && app.kind == "app"
        }
        _ => false,
    })
}

/// The blob and content type of an icon or screenshot, for callers who may
/// see the app: operators, and merchant users whose store offers it or
/// whose terminals run it as a system app.
pub fn image(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    screenshot_id: Option<i64>,
) -> Result<(String, String), Error> {
    let app = find_app(conn, app_id)?;
    if let Some(merchant) = actor.merchant_id()
        && app.visibility != "system"
        && !offered_to(conn, &app, merchant)?
    {
        return Err(Error::not_found("app"));
    }
    let found = match screenshot_id {
        None => app.icon_sha256.zip(app.icon_content_type),
        Some(id) => app_screenshots::table
            .filter(app_screenshots::app_id.eq(app_id))
            .filter(app_screenshots::id.eq(id))
            .select((app_screenshots::sha256, app_screenshots::content_type))
            .first(conn)
            .optional()?,
    };
    found.ok_or_else(|| Error::not_found(if screenshot_id.is_some() { "screenshot" } else { "icon" }))
}
