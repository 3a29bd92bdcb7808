//! Who may do what: operator roles, merchant permissions, and the address
//! rules that decide when an order needs a new location.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Roles of the payment provider's own staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OperatorRole {
    /// Everything, including other operators.
    OperatorAdmin,
    /// Apps, releases and rollouts.
    ReleaseEngineer,
    /// Any merchant's orders, users, devices and parameters.
    Support,
}

impl OperatorRole {
    pub const ALL: [OperatorRole; 3] =
        [OperatorRole::OperatorAdmin, OperatorRole::ReleaseEngineer, OperatorRole::Support];

    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::OperatorAdmin => "operator_admin",
            OperatorRole::ReleaseEngineer => "release_engineer",
            OperatorRole::Support => "support",
        }
    }

    /// Whether this role reaches into merchants' accounts (orders, users, devices).
    pub fn manages_merchants(self) -> bool {
        matches!(self, OperatorRole::OperatorAdmin | OperatorRole::Support)
    }
}

/// What a merchant user may do, merchant-wide or per location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    ActivateApp,
    ManageUsers,
    ManageDevices,
    InstallApps,
    ViewTransactions,
    ExportTransactions,
    ManageSettings,
}

impl Permission {
    pub const ALL: [Permission; 7] = [
        Permission::ActivateApp,
        Permission::ManageUsers,
        Permission::ManageDevices,
        Permission::InstallApps,
        Permission::ViewTransactions,
        Permission::ExportTransactions,
        Permission::ManageSettings,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ActivateApp => "activate_app",
            Permission::ManageUsers => "manage_users",
            Permission::ManageDevices => "manage_devices",
            Permission::InstallApps => "install_apps",
            Permission::ViewTransactions => "view_transactions",
            Permission::ExportTransactions => "export_transactions",
            Permission::ManageSettings => "manage_settings",
        }
    }
}

/// A name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub kind: &'static str,
    pub name: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.kind, self.name)
    }
}

impl std::error::Error for UnknownName {}

macro_rules! from_str_via_all {
    ($ty:ty, $kind:literal) => {
        impl FromStr for $ty {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$ty>::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownName { kind: $kind, name: s.to_owned() })
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

from_str_via_all!(OperatorRole, "operator role");
from_str_via_all!(Permission, "permission");

/// A set of permissions in its stored form: sorted names joined by commas.
pub fn permissions_to_text(perms: &BTreeSet<Permission>) -> String {
    perms.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
}

pub fn permissions_from_text(text: &str) -> Result<BTreeSet<Permission>, UnknownName> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect()
}

/// Normalises an e-mail address for lookups: trimmed and lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A plausibility check, not RFC 5322: one `@`, something on both sides, a dot
/// in the domain, no spaces.
pub fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains(char::is_whitespace)
        && !domain.contains('@')
        && email.len() <= 254
}

/// The key under which two spellings of one delivery address are the same
/// place: case, punctuation and spacing do not matter.
pub fn address_key(line1: &str, line2: &str, postal_code: &str, city: &str, country: &str) -> String {
    [line1, line2, postal_code, city, country]
        .iter()
        .map(|part| {
            part.chars()
                .filter(|c| c.is_alphanumeric() || c.is_whitespace())
                .collect::<String>()
                .to_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
        }
        for r in OperatorRole::ALL {
            assert_eq!(r.as_str().parse::<OperatorRole>().unwrap(), r);
        }
        assert_eq!(
            "superuser".parse::<OperatorRole>().unwrap_err().to_string(),
            "unknown operator role \"superuser\""
        );
    }

    #[test]
    fn permission_text_is_canonical() {
        let set = permissions_from_text("manage_users, activate_app,,").unwrap();
        assert_eq!(permissions_to_text(&set), "activate_app,manage_users");
        assert!(permissions_from_text("").unwrap().is_empty());
        assert!(permissions_from_text("activate_app,fly").is_err());
    }

    #[test]
    fn same_place_same_key() {
        let a = address_key("12, Rue de la Paix", "", "75002", "Paris", "FR");
        let b = address_key("12 rue de la  paix", "", "75002", "PARIS", "fr");
        assert_eq!(a, b);
        assert_ne!(a, address_key("14 rue de la paix", "", "75002", "Paris", "FR"));
    }

    #[test]
    fn email_checks() {
        assert!(is_plausible_email("anne@boulangerie.fr"));
        assert!(!is_plausible_email("anne@localhost"));
        assert!(!is_plausible_email("anne boulangerie.fr"));
        assert!(!is_plausible_email("a@b@c.fr"));
        assert_eq!(normalize_email("  Anne@Boulangerie.FR "), "anne@boulangerie.fr");
    }
}
