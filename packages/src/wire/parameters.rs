//! Wire types of parameters.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

wire! {
    /// One change to what a level sets for one scope: a new version.
    pub struct ChangeParametersRequest {
        /// Keys to set, with their values.
        #[serde(default)]
        pub set: BTreeMap<String, Value>,
        /// Keys to stop setting here.
        #[serde(default)]
        pub unset: Vec<String>,
        /// Keys to lock here, so more specific levels cannot override them (operators).
        #[serde(default)]
        pub lock: Vec<String>,
        #[serde(default)]
        pub unlock: Vec<String>,
        /// Why (kept with the version).
        #[serde(default)]
        pub reason: String,
    }

    pub struct ParameterSetView {
        pub app_id: String,
        /// `global`, `merchant`, `location` or `device`.
        pub level: String,
        /// Merchant, location or device id (0 for global).
        pub scope_id: i64,
        /// 0 while the level sets nothing here.
        pub version: u64,
        /// Values set here; secrets show as `(set)`.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        pub values: BTreeMap<String, Value>,
        pub locked: BTreeSet<String>,
    }

    pub struct ParameterVersionView {
        pub version: u64,
        pub created_at: String,
        pub created_by: String,
        pub reason: String,
        /// Keys this version changed from the one before.
        pub keys_changed: Vec<String>,
    }

    pub struct EffectiveValue {
        /// Any JSON value of the key's type; secrets show as `(set)`.
        #[cfg_attr(feature = "openapi", schema(value_type = Value))]
        pub value: Value,
        /// `default`, `global`, `merchant`, `location` or `device`.
        pub origin: String,
    }

    /// What a terminal sees: the effective values with where each came from.
    pub struct EffectiveParametersView {
        pub app_id: String,
        pub device_id: i64,
        /// `global.merchant.location.device` versions; names this exact set.
        pub version: String,
        pub values: BTreeMap<String, EffectiveValue>,
    }

    pub struct ParameterDiffView {
        pub from: String,
        pub to: String,
        /// New or changed keys with their new value (secrets as `(set)`).
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        pub changed: BTreeMap<String, Value>,
        pub removed: Vec<String>,
    }

    /// A scope's parameters for a person: what its level sets, what the
    /// scope's terminals get and from where.
    pub struct ScopeParametersView {
        /// What the level sets here.
        pub set: ParameterSetView,
        pub schema: crate::parameters::Schema,
        /// Every key of the schema, as a terminal of the scope without values
        /// of its own gets it.
        pub effective: BTreeMap<String, ScopedValue>,
        /// Active terminals in the scope.
        pub terminals: u64,
    }

    pub struct ScopedValue {
        /// None when no level sets it and it has no default; secrets as `(set)`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
        pub value: Option<Value>,
        /// `default`, `global`, `merchant`, `location` or `device`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub origin: Option<String>,
        /// The less specific level that locked the key: it cannot be set here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub locked_above: Option<String>,
    }

    /// What a change would do, before it is saved.
    pub struct ParameterChangePreview {
        /// The version the scope's set would become (the current one when
        /// the change changes nothing).
        pub version: u64,
        pub changes: Vec<KeyChange>,
        /// Active terminals in the scope (those with a value of their own
        /// for a key keep it).
        pub terminals: u64,
    }

    pub struct KeyChange {
        pub key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
        pub before: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub before_origin: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
        pub after: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub after_origin: Option<String>,
        /// `locked` or `unlocked` when the change does that here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub lock: Option<String>,
    }

    /// A terminal whose merchant-menu password is weak.
    pub struct ReportedDevice {
        pub device_id: i64,
        pub name: String,
        pub merchant_id: i64,
        pub location_id: i64,
        /// `default` (99999), `sequence` (12345, 54321), `repeated_digit`
        /// (11111), or `malformed` (set before values were checked: empty,
        /// too short or not digits).
        #[serde(default)]
        pub reason: String,
    }
}
