//! User groups: per-location permissions and visibility for a merchant's users.

use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::{Permission, permissions_to_text};
use tms_packages::wire::accounts::GroupView;

use super::access::Actor;
use super::rows::{self, GroupRow};
use super::users::parse_permissions;
use crate::db::schema::{group_grants, group_members, user_groups};
use crate::db::{DbConnection, audit};
use crate::error::{Error, ErrorCode};
use crate::per_backend;
use crate::time::now;

/// A group the caller may manage (merchant-wide `manage_users`), or 404.
fn managed_group(conn: &mut DbConnection, actor: &Actor, group_id: i64) -> Result<GroupRow, Error> {
    let group = match rows::find_group(conn, group_id)? {
        Some(g) if actor.sees_merchant(g.merchant_id) => g,
        _ => return Err(Error::not_found("group")),
    };
    actor.require(group.merchant_id, None, Permission::ManageUsers)?;
    Ok(group)
}

pub fn create_group(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
    name: &str,
) -> Result<GroupView, Error> {
    actor.check_merchant(merchant_id, "merchant")?;
    actor.require(merchant_id, None, Permission::ManageUsers)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid("name", "a group needs a name of 1 to 100 characters"));
    }
    crate::db::write_tx(conn, |conn| {
        rows::find_merchant(conn, merchant_id)?.ok_or_else(|| Error::not_found("merchant"))?;
        let taken: i64 = user_groups::table
            .filter(user_groups::merchant_id.eq(merchant_id))
            .filter(user_groups::name.eq(name))
            .count()
            .get_result(conn)?;
        if taken > 0 {
            return Err(Error::new(ErrorCode::Conflict, format!("a group named {name:?} exists")));
        }
        let insert = diesel::insert_into(user_groups::table).values((
            user_groups::merchant_id.eq(merchant_id),
            user_groups::name.eq(name),
            user_groups::created_at.eq(now()),
        ));
        let id: i64 = per_backend!(conn, |c| insert.returning(user_groups::id).get_result(c))?;
        let subject = format!("group:{id}");
        audit::record(
            conn,
            &actor.audit("group.create", &subject, Some(merchant_id), &json!({"name": name})),
        )?;
        let group = rows::find_group(conn, id)?.ok_or_else(|| Error::not_found("group"))?;
        Ok(rows::group_view(conn, &group)?)
    })
}

pub fn list_groups(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
) -> Result<Vec<GroupView>, Error> {
    actor.check_merchant(merchant_id, "merchant")?;
    actor.require(merchant_id, None, Permission::ManageUsers)?;
    rows::find_merchant(conn, merchant_id)?.ok_or_else(|| Error::not_found("merchant"))?;
    let found: Vec<GroupRow> = user_groups::table
        .filter(user_groups::merchant_id.eq(merchant_id))
        .order(user_groups::id)
        .select(GroupRow::as_select())
        .load(conn)?;
    found.iter().map(|g| rows::group_view(conn, g).map_err(Error::from)).collect()
}

pub fn show_group(conn: &mut DbConnection, actor: &Actor, group_id: i64) -> Result<GroupView, Error> {
    let group = managed_group(conn, actor, group_id)?;
    Ok(rows::group_view(conn, &group)?)
}

pub fn delete_group(conn: &mut DbConnection, actor: &Actor, group_id: i64) -> Result<(), Error> {
    crate::db::write_tx(conn, |conn| {
        let group = managed_group(conn, actor, group_id)?;
        let before = rows::group_view(conn, &group)?;
        diesel::delete(group_grants::table.filter(group_grants::group_id.eq(group.id))).execute(conn)?;
        diesel::delete(group_members::table.filter(group_members::group_id.eq(group.id))).execute(conn)?;
        diesel::delete(user_groups::table.find(group.id)).execute(conn)?;
        let subject = format!("group:{}", group.id);
        audit::record(
            conn,
            &actor.audit(
                "group.delete",
                &subject,
                Some(group.merchant_id),
                &json!({"before": {"name": group.name, "members": before.members, "grants": before.grants}}),
            ),
        )?;
        Ok(())
    })
}

/// Sets what a group's members may do at one of the merchant's locations; an
/// empty list removes the grant (and with it the location from their view).
pub fn set_grant(
    conn: &mut DbConnection,
    actor: &Actor,
    group_id: i64,
    location_id: i64,
    permissions: &[String],
) -> Result<GroupView, Error> {
    let permissions = parse_permissions("permissions", permissions)?;
    crate::db::write_tx(conn, |conn| {
        let group = managed_group(conn, actor, group_id)?;
        match rows::find_location(conn, location_id)? {
            Some(l) if l.merchant_id == group.merchant_id && actor.sees_location(l.merchant_id, l.id) => {}
            _ => return Err(Error::not_found("location")),
        }
        super::users::refuse_beyond_own(actor, group.merchant_id, Some(location_id), &permissions)?;
        let before: Option<String> = group_grants::table
            .find((group.id, location_id))
            .select(group_grants::permissions)
            .first(conn)
            .optional()?;
        diesel::delete(group_grants::table.find((group.id, location_id))).execute(conn)?;
        if !permissions.is_empty() {
            diesel::insert_into(group_grants::table)
                .values((
                    group_grants::group_id.eq(group.id),
                    group_grants::location_id.eq(location_id),
                    group_grants::permissions.eq(permissions_to_text(&permissions)),
                ))
                .execute(conn)?;
        }
        let subject = format!("group:{}", group.id);
        audit::record(
            conn,
            &actor.audit(
                "group.grant",
                &subject,
                Some(group.merchant_id),
                &json!({"location_id": location_id, "before": before, "after": permissions_to_text(&permissions)}),
            ),
        )?;
        Ok(rows::group_view(conn, &group)?)
    })
}

/// Sets several locations' grants of a group in one transaction: all or
/// nothing. Locations not named keep theirs.
pub fn set_grants(
    conn: &mut DbConnection,
    actor: &Actor,
    group_id: i64,
    grants: &[(i64, Vec<String>)],
) -> Result<GroupView, Error> {
    crate::db::write_tx(conn, |conn| {
        let group = managed_group(conn, actor, group_id)?;
        let mut view = rows::group_view(conn, &group)?;
        for (location_id, permissions) in grants {
            view = set_grant(conn, actor, group_id, *location_id, permissions)?;
        }
        Ok(view)
    })
}

pub fn set_member(
    conn: &mut DbConnection,
    actor: &Actor,
    group_id: i64,
    user_id: i64,
    member: bool,
) -> Result<GroupView, Error> {
    crate::db::write_tx(conn, |conn| {
        let group = managed_group(conn, actor, group_id)?;
        let user = match rows::find_user(conn, user_id)? {
            Some(u) if u.merchant_id == Some(group.merchant_id) => u,
            _ => return Err(Error::not_found("user")),
        };
        if user.id == actor.user_id && !actor.is_admin_of(group.merchant_id) {
            return Err(Error::forbidden("ask an admin to change your own groups"));
        }
        // What a group grants is part of the profile: locked while in use.
        super::merchants::refuse_if_in_use(conn, &user)?;
        let target = group_members::table.find((group.id, user_id));
        let is_member: i64 = target.count().get_result(conn)?;
        match (member, is_member > 0) {
            (true, false) => {
                diesel::insert_into(group_members::table)
                    .values((group_members::group_id.eq(group.id), group_members::user_id.eq(user_id)))
                    .execute(conn)?;
            }
            (false, true) => {
                diesel::delete(target).execute(conn)?;
            }
            _ => return Ok(rows::group_view(conn, &group)?),
        }
        let subject = format!("group:{}", group.id);
        let action = if member { "group.add_member" } else { "group.remove_member" };
        audit::record(
            conn,
            &actor.audit(action, &subject, Some(group.merchant_id), &json!({"user_id": user_id})),
        )?;
        Ok(rows::group_view(conn, &group)?)
    })
}
