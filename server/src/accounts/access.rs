//! Who is asking, and what they may see and do.
//!
//! Scoping rule: a merchant user asking for another merchant's object gets
//! 404, never 403 and never the object. 403 is only for objects the caller can
//! see but may not change, and for operator roles without the right.

use std::collections::{BTreeMap, BTreeSet};

use tms_packages::accounts::{OperatorRole, Permission};

use crate::db::audit::NewAuditEvent;
use crate::error::Error;

/// The authenticated caller of the management API.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: i64,
    pub email: String,
    pub role: Role,
    /// The session or API token the request came with.
    pub token_id: i64,
    /// Whether that token is a login session (not an API token).
    pub session: bool,
    pub source_ip: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Role {
    Operator(OperatorRole),
    Merchant(MerchantAccess),
}

#[derive(Debug, Clone)]
pub struct MerchantAccess {
    pub merchant_id: i64,
    pub is_admin: bool,
    /// Merchant-wide permissions of the user.
    pub permissions: BTreeSet<Permission>,
    /// Locations the user's groups grant, with the permissions there.
    pub locations: BTreeMap<i64, BTreeSet<Permission>>,
}

impl Actor {
    pub fn operator_role(&self) -> Option<OperatorRole> {
        match &self.role {
            Role::Operator(role) => Some(*role),
            Role::Merchant(_) => None,
        }
    }

    pub fn merchant_id(&self) -> Option<i64> {
        match &self.role {
            Role::Merchant(m) => Some(m.merchant_id),
            Role::Operator(_) => None,
        }
    }

    /// Only these operator roles may go on.
    pub fn require_operator(&self, allowed: &[OperatorRole]) -> Result<OperatorRole, Error> {
        match self.operator_role() {
            Some(role) if allowed.contains(&role) => Ok(role),
            Some(role) => Err(Error::forbidden(format!("the {role} role may not do this"))),
            None => Err(Error::forbidden("only the payment provider's staff may do this")),
        }
    }

    /// The merchant's data is visible to the caller at all: its own users, and
    /// operators whose role manages merchants. Others get a plain 404.
    pub fn sees_merchant(&self, merchant_id: i64) -> bool {
        match &self.role {
            Role::Operator(role) => role.manages_merchants(),
            Role::Merchant(m) => m.merchant_id == merchant_id,
        }
    }

    pub fn check_merchant(&self, merchant_id: i64, what: &str) -> Result<(), Error> {
        if self.sees_merchant(merchant_id) { Ok(()) } else { Err(Error::not_found(what)) }
    }

    /// Whether the caller sees a location (and its terminals): operators who
    /// manage merchants, the merchant's admins, and users whose groups grant it.
    pub fn sees_location(&self, merchant_id: i64, location_id: i64) -> bool {
        match &self.role {
            Role::Operator(role) => role.manages_merchants(),
            Role::Merchant(m) => {
                m.merchant_id == merchant_id && (m.is_admin || m.locations.contains_key(&location_id))
            }
        }
    }

    /// Whether the caller holds `permission` merchant-wide (`location: None`)
    /// or at one location.
    pub fn may(&self, merchant_id: i64, location: Option<i64>, permission: Permission) -> bool {
        match &self.role {
            Role::Operator(role) => role.manages_merchants(),
            Role::Merchant(m) if m.merchant_id != merchant_id => false,
            Role::Merchant(m) if m.is_admin => true,
            Role::Merchant(m) => match location {
                None => m.permissions.contains(&permission),
                Some(l) => m.locations.get(&l).is_some_and(|granted| {
                    granted.contains(&permission) || m.permissions.contains(&permission)
                }),
            },
        }
    }

    /// Whether the caller holds `permission` anywhere in the merchant:
    /// merchant-wide or at one of its locations (what a menu offers).
    pub fn may_somewhere(&self, merchant_id: i64, permission: Permission) -> bool {
        match &self.role {
            Role::Merchant(m) if m.merchant_id == merchant_id && !m.is_admin => {
                m.permissions.contains(&permission)
                    || m.locations.values().any(|granted| granted.contains(&permission))
            }
            _ => self.may(merchant_id, None, permission),
        }
    }

    /// 403 naming the missing permission; call after the visibility check.
    pub fn require(
        &self,
        merchant_id: i64,
        location: Option<i64>,
        permission: Permission,
    ) -> Result<(), Error> {
        if self.may(merchant_id, location, permission) {
            Ok(())
        } else {
            Err(Error::forbidden(format!("this needs the {permission} permission")))
        }
    }

    /// Credentials (API tokens, two-step verification) are managed from a
    /// login session only, so a leaked API token cannot entrench itself.
    pub fn require_session(&self) -> Result<(), Error> {
        if self.session {
            Ok(())
        } else {
            Err(Error::forbidden("log in to manage tokens and two-step verification"))
        }
    }

    /// Whether the caller is the payment provider's staff or a merchant admin
    /// (who may hand out admin rights and read the audit trail).
    pub fn is_admin_of(&self, merchant_id: i64) -> bool {
        match &self.role {
            Role::Operator(role) => role.manages_merchants(),
            Role::Merchant(m) => m.merchant_id == merchant_id && m.is_admin,
        }
    }

    /// An audit event by this caller.
    pub fn audit<'a>(
        &'a self,
        action: &'a str,
        subject: &'a str,
        merchant_id: Option<i64>,
        detail: &serde_json::Value,
    ) -> NewAuditEvent<'a> {
        NewAuditEvent {
            actor_user_id: Some(self.user_id),
            merchant_id,
            source_ip: self.source_ip.as_deref(),
            ..NewAuditEvent::now(&self.email, action, subject, detail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant_user(is_admin: bool, perms: &[Permission], locations: &[(i64, &[Permission])]) -> Actor {
        Actor {
            user_id: 1,
            email: "u@m.fr".into(),
            role: Role::Merchant(MerchantAccess {
                merchant_id: 10,
                is_admin,
                permissions: perms.iter().copied().collect(),
                locations: locations.iter().map(|(l, p)| (*l, p.iter().copied().collect())).collect(),
            }),
            token_id: 1,
            session: true,
            source_ip: None,
        }
    }

    #[test]
    fn groups_decide_what_a_non_admin_sees_and_may_do() {
        let user =
            merchant_user(false, &[Permission::ViewTransactions], &[(100, &[Permission::ManageSettings])]);
        assert!(user.sees_location(10, 100));
        assert!(!user.sees_location(10, 101));
        assert!(!user.sees_location(11, 100), "another merchant's location");
        assert!(user.may(10, Some(100), Permission::ManageSettings));
        assert!(
            user.may(10, Some(100), Permission::ViewTransactions),
            "merchant-wide permission at a visible location"
        );
        assert!(!user.may(10, Some(101), Permission::ViewTransactions), "not at an invisible one");
        assert!(!user.may(10, None, Permission::ManageSettings), "a location grant is not merchant-wide");
        assert!(!user.may(11, None, Permission::ViewTransactions));
    }

    #[test]
    fn admins_see_their_merchant_only() {
        let admin = merchant_user(true, &[], &[]);
        assert!(admin.sees_location(10, 999));
        assert!(admin.may(10, None, Permission::ManageUsers));
        assert!(!admin.sees_merchant(11));
        assert!(!admin.may(11, None, Permission::ManageUsers));
    }

    #[test]
    fn release_engineers_do_not_reach_merchants() {
        let re = Actor {
            user_id: 2,
            email: "re@psp.example".into(),
            role: Role::Operator(OperatorRole::ReleaseEngineer),
            token_id: 2,
            session: true,
            source_ip: None,
        };
        assert!(!re.sees_merchant(10));
        assert!(re.require_operator(&[OperatorRole::OperatorAdmin, OperatorRole::Support]).is_err());
        assert!(re.require_operator(&[OperatorRole::ReleaseEngineer]).is_ok());
    }
}
