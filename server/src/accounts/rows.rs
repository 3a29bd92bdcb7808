//! Database rows of the account side, and their wire views.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use tms_packages::accounts::permissions_from_text;
use tms_packages::wire::accounts::{
    Address, GroupView, LocationGrant, LocationView, MerchantView, TerminalView, UserView,
};

use crate::db::schema::{group_grants, group_members, locations, merchants, terminals, user_groups, users};
use crate::db::{DbConnection, DbError};
use crate::time::rfc3339;

pub const USER_ACTIVE: &str = "active";
pub const USER_INVITED: &str = "invited";
/// An operator an operator admin switched off: no login, no session, no token.
pub const USER_DISABLED: &str = "disabled";
pub const KIND_OPERATOR: &str = "operator";
pub const KIND_MERCHANT: &str = "merchant";
pub const MERCHANT_PENDING: &str = "pending_activation";
pub const MERCHANT_ACTIVE: &str = "active";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub password_hash: Option<String>,
    pub kind: String,
    pub operator_role: Option<String>,
    pub merchant_id: Option<i64>,
    pub is_admin: bool,
    pub permissions: String,
    pub status: String,
    pub totp_secret: Option<String>,
    pub totp_enabled: bool,
    pub totp_last_step: Option<i64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub language: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = merchants)]
pub struct MerchantRow {
    pub id: i64,
    pub name: String,
    pub contact_email: String,
    pub status: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = locations)]
pub struct LocationRow {
    pub id: i64,
    pub merchant_id: i64,
    pub name: String,
    pub address_line1: String,
    pub address_line2: String,
    pub postal_code: String,
    pub city: String,
    pub country: String,
    pub address_key: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = terminals)]
pub struct TerminalRow {
    pub id: i64,
    pub merchant_id: i64,
    pub location_id: i64,
    pub order_id: i64,
    pub serial: String,
    pub model: String,
    pub registered_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = user_groups)]
pub struct GroupRow {
    pub id: i64,
    pub merchant_id: i64,
    pub name: String,
    pub created_at: NaiveDateTime,
}

impl MerchantRow {
    pub fn view(&self) -> MerchantView {
        MerchantView {
            id: self.id,
            name: self.name.clone(),
            contact_email: self.contact_email.clone(),
            status: self.status.clone(),
            created_at: rfc3339(self.created_at),
        }
    }
}

impl LocationRow {
    pub fn view(&self) -> LocationView {
        LocationView {
            id: self.id,
            merchant_id: self.merchant_id,
            name: self.name.clone(),
            address: Address {
                line1: self.address_line1.clone(),
                line2: self.address_line2.clone(),
                postal_code: self.postal_code.clone(),
                city: self.city.clone(),
                country: self.country.clone(),
            },
            created_at: rfc3339(self.created_at),
        }
    }
}

impl TerminalRow {
    pub fn view(&self) -> TerminalView {
        TerminalView {
            id: self.id,
            merchant_id: self.merchant_id,
            location_id: self.location_id,
            serial: self.serial.clone(),
            model: self.model.clone(),
            registered_at: rfc3339(self.registered_at),
        }
    }
}

pub fn find_user(conn: &mut DbConnection, id: i64) -> Result<Option<UserRow>, DbError> {
    Ok(users::table.find(id).select(UserRow::as_select()).first(conn).optional()?)
}

pub fn find_user_by_email(conn: &mut DbConnection, email: &str) -> Result<Option<UserRow>, DbError> {
    Ok(users::table.filter(users::email.eq(email)).select(UserRow::as_select()).first(conn).optional()?)
}

pub fn find_merchant(conn: &mut DbConnection, id: i64) -> Result<Option<MerchantRow>, DbError> {
    Ok(merchants::table.find(id).select(MerchantRow::as_select()).first(conn).optional()?)
}

pub fn find_location(conn: &mut DbConnection, id: i64) -> Result<Option<LocationRow>, DbError> {
    Ok(locations::table.find(id).select(LocationRow::as_select()).first(conn).optional()?)
}

pub fn find_group(conn: &mut DbConnection, id: i64) -> Result<Option<GroupRow>, DbError> {
    Ok(user_groups::table.find(id).select(GroupRow::as_select()).first(conn).optional()?)
}

pub fn user_view(conn: &mut DbConnection, row: &UserRow) -> Result<UserView, DbError> {
    let groups: Vec<i64> = group_members::table
        .filter(group_members::user_id.eq(row.id))
        .select(group_members::group_id)
        .order(group_members::group_id)
        .load(conn)?;
    Ok(UserView {
        id: row.id,
        email: row.email.clone(),
        kind: row.kind.clone(),
        operator_role: row.operator_role.clone(),
        merchant_id: row.merchant_id,
        is_admin: row.is_admin,
        permissions: permissions_from_text(&row.permissions)
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        status: row.status.clone(),
        two_factor_enabled: row.totp_enabled,
        groups,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    })
}

pub fn group_view(conn: &mut DbConnection, row: &GroupRow) -> Result<GroupView, DbError> {
    let members: Vec<i64> = group_members::table
        .filter(group_members::group_id.eq(row.id))
        .select(group_members::user_id)
        .order(group_members::user_id)
        .load(conn)?;
    let grants: Vec<(i64, String)> = group_grants::table
        .filter(group_grants::group_id.eq(row.id))
        .select((group_grants::location_id, group_grants::permissions))
        .order(group_grants::location_id)
        .load(conn)?;
    Ok(GroupView {
        id: row.id,
        merchant_id: row.merchant_id,
        name: row.name.clone(),
        members,
        grants: grants
            .into_iter()
            .map(|(location_id, perms)| LocationGrant {
                location_id,
                permissions: permissions_from_text(&perms)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| p.as_str().to_owned())
                    .collect(),
            })
            .collect(),
    })
}
