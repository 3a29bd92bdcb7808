//! Parameters: typed schemas per app, values set at levels (global <
//! merchant < location < device) with locks, the effective set a terminal
//! sees, and key-level differences between versions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a value is set; later levels are more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Global,
    Merchant,
    Location,
    Device,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Global, Level::Merchant, Level::Location, Level::Device];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Global => "global",
            Level::Merchant => "merchant",
            Level::Location => "location",
            Level::Device => "device",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = crate::accounts::UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| crate::accounts::UnknownName { kind: "level", name: s.to_owned() })
    }
}

/// The type of a parameter and its bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ParamType {
    String {
        max_len: usize,
    },
    Integer {
        min: i64,
        max: i64,
    },
    Boolean,
    Enum {
        values: Vec<String>,
    },
    /// Write-only for people: shown as set/unset, delivered to terminals only.
    Secret {
        max_len: usize,
        /// At least this many characters (0: may be empty).
        #[serde(default, skip_serializing_if = "is_zero")]
        min_len: usize,
        /// Digits only (a PIN typed on the terminal's keypad).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        digits: bool,
    },
    /// A small file, base64 in the value.
    File {
        max_bytes: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyDef {
    #[serde(flatten)]
    pub ty: ParamType,
    /// The value when no level sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    pub default: Option<Value>,
    #[serde(default)]
    pub description: String,
    /// The levels that may set it.
    pub levels: Vec<Level>,
}

/// The parameters an app (or the terminal itself) understands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Schema {
    pub keys: BTreeMap<String, KeyDef>,
}

/// Why a value is refused, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ParamError {}

fn refuse(key: &str, reason: impl Into<String>) -> ParamError {
    ParamError { key: key.to_owned(), reason: reason.into() }
}

/// The app id of the terminal's own settings.
pub const TERMINAL_APP: &str = "tms.terminal";
pub const MERCHANT_PASSWORD_KEY: &str = "merchant_menu.password";
pub const MERCHANT_PASSWORD_DEFAULT: &str = "99999";
pub const CONTACT_INTERVAL_KEY: &str = "tms.contact_interval_secs";

impl Schema {
    /// The terminal's built-in settings (the seed's): receipt layout per
    /// location, printing the customer receipt, the merchant-menu password and
    /// the TMS contact interval.
    pub fn terminal() -> Schema {
        let all = vec![Level::Global, Level::Merchant, Level::Location, Level::Device];
        let key = |ty: ParamType, default: Option<Value>, description: &str, levels: &[Level]| KeyDef {
            ty,
            default,
            description: description.to_owned(),
            levels: levels.to_vec(),
        };
        let keys = BTreeMap::from([
            (
                "receipt.header".to_owned(),
                key(
                    ParamType::String { max_len: 400 },
                    Some(Value::from("")),
                    "Lines printed at the top of receipts",
                    &all,
                ),
            ),
            (
                "receipt.footer".to_owned(),
                key(
                    ParamType::String { max_len: 400 },
                    Some(Value::from("")),
                    "Lines printed at the bottom of receipts",
                    &all,
                ),
            ),
            (
                "receipt.logo".to_owned(),
                key(
                    ParamType::File { max_bytes: 64 * 1024 },
                    None,
                    "Logo printed on receipts (base64, at most 64 KiB)",
                    &all,
                ),
            ),
            (
                "receipt.print_customer_copy".to_owned(),
                key(
                    ParamType::Boolean,
                    Some(Value::from(true)),
                    "Print the customer receipt by default",
                    &all,
                ),
            ),
            (
                MERCHANT_PASSWORD_KEY.to_owned(),
                key(
                    ParamType::Secret { min_len: 4, max_len: 12, digits: true },
                    Some(Value::from(MERCHANT_PASSWORD_DEFAULT)),
                    "Password of the merchant menu on the terminal",
                    &all,
                ),
            ),
            (
                CONTACT_INTERVAL_KEY.to_owned(),
                key(
                    ParamType::Integer { min: 60, max: 86_400 },
                    Some(Value::from(300)),
                    "Seconds between TMS contacts",
                    &[Level::Global, Level::Merchant, Level::Location],
                ),
            ),
        ]);
        Schema { keys }
    }

    /// Checks the schema itself: defaults of the right type, levels given.
    pub fn validate(&self) -> Result<(), ParamError> {
        for (key, def) in &self.keys {
            if key.is_empty()
                || key.len() > 100
                || !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(refuse(key, "keys are 1 to 100 letters, digits, dots, dashes or underscores"));
            }
            if def.levels.is_empty() {
                return Err(refuse(key, "at least one level may set it"));
            }
            if let ParamType::Integer { min, max } = def.ty
                && min > max
            {
                return Err(refuse(key, "min is above max"));
            }
            if let Some(default) = &def.default {
                check_type(key, &def.ty, default)?;
            }
        }
        Ok(())
    }

    /// Checks one value set at `level`.
    pub fn check(&self, key: &str, value: &Value, level: Level) -> Result<(), ParamError> {
        let def = self.keys.get(key).ok_or_else(|| refuse(key, "unknown parameter"))?;
        if !def.levels.contains(&level) {
            let levels: Vec<&str> = def.levels.iter().map(|l| l.as_str()).collect();
            return Err(refuse(
                key,
                format!("cannot be set at the {level} level (only {})", levels.join(", ")),
            ));
        }
        check_type(key, &def.ty, value)
    }

    pub fn is_secret(&self, key: &str) -> bool {
        matches!(self.keys.get(key).map(|d| &d.ty), Some(ParamType::Secret { .. }))
    }
}

fn check_type(key: &str, ty: &ParamType, value: &Value) -> Result<(), ParamError> {
    match (ty, value) {
        (ParamType::String { max_len }, Value::String(s)) => {
            if s.chars().count() > *max_len {
                return Err(refuse(key, format!("at most {max_len} characters")));
            }
            Ok(())
        }
        (ParamType::Secret { max_len, min_len, digits }, Value::String(s)) => {
            let what = if *digits { "digits" } else { "characters" };
            let n = s.chars().count();
            if n < *min_len || n > *max_len {
                return Err(refuse(
                    key,
                    match *min_len {
                        0 => format!("at most {max_len} {what}"),
                        min => format!("{min} to {max_len} {what}"),
                    },
                ));
            }
            if *digits && !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refuse(key, format!("digits only, {min_len} to {max_len}")));
            }
            Ok(())
        }
        (ParamType::Integer { min, max }, Value::Number(n)) => match n.as_i64() {
            Some(i) if (*min..=*max).contains(&i) => Ok(()),
            _ => Err(refuse(key, format!("an integer from {min} to {max}"))),
        },
        (ParamType::Boolean, Value::Bool(_)) => Ok(()),
        (ParamType::Enum { values }, Value::String(s)) if values.contains(s) => Ok(()),
        (ParamType::Enum { values }, _) => Err(refuse(key, format!("one of {}", values.join(", ")))),
        (ParamType::File { max_bytes }, Value::String(s)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| refuse(key, "a file as base64"))?;
            if bytes.len() > *max_bytes {
                return Err(refuse(key, format!("a file of at most {max_bytes} bytes")));
            }
            Ok(())
        }
        (ty, _) => Err(refuse(key, format!("expected a {}", type_name(ty)))),
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Why a merchant-menu password is weak, if it is: the default, one digit
/// repeated (`11111`) or a run of consecutive digits up or down (`12345`,
/// `98765`). Anyone at the counter tries these first.
pub fn weak_pin_reason(pin: &str) -> Option<&'static str> {
    if pin == MERCHANT_PASSWORD_DEFAULT {
        return Some("default");
    }
    let digits: Vec<i16> = pin.bytes().filter(u8::is_ascii_digit).map(|b| i16::from(b - b'0')).collect();
    if digits.len() != pin.len() || digits.len() < 2 {
        return None;
    }
    let steps: Vec<i16> = digits.windows(2).map(|w| w[1] - w[0]).collect();
    if steps.iter().all(|s| *s == 0) {
        Some("repeated_digit")
    } else if steps.iter().all(|s| *s == 1) || steps.iter().all(|s| *s == -1) {
        Some("sequence")
    } else {
        None
    }
}

fn type_name(ty: &ParamType) -> &'static str {
    match ty {
        ParamType::String { .. } => "string",
        ParamType::Integer { .. } => "integer",
        ParamType::Boolean => "boolean",
        ParamType::Enum { .. } => "string from the list",
        ParamType::Secret { .. } => "string",
        ParamType::File { .. } => "base64 string",
    }
}

/// Turns `key=value` text into a typed value, following the schema.
pub fn parse_value(schema: &Schema, key: &str, text: &str) -> Result<Value, ParamError> {
    let def = schema.keys.get(key).ok_or_else(|| refuse(key, "unknown parameter"))?;
    let value = match def.ty {
        ParamType::Integer { .. } => {
            Value::from(text.trim().parse::<i64>().map_err(|_| refuse(key, "an integer"))?)
        }
        ParamType::Boolean => Value::from(match text.trim() {
            "true" | "on" | "yes" | "1" => true,
            "false" | "off" | "no" | "0" => false,
            _ => return Err(refuse(key, "true or false")),
        }),
        _ => Value::from(text),
    };
    Ok(value)
}

/// The values one level sets for one scope, at one version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LevelSet {
    pub values: BTreeMap<String, Value>,
    /// Keys locked here: more specific levels cannot override them.
    #[serde(default)]
    pub locked: BTreeSet<String>,
}

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Default,
    Global,
    Merchant,
    Location,
    Device,
}

impl From<Level> for Origin {
    fn from(l: Level) -> Origin {
        match l {
            Level::Global => Origin::Global,
            Level::Merchant => Origin::Merchant,
            Level::Location => Origin::Location,
            Level::Device => Origin::Device,
        }
    }
}

/// The identity of what a terminal sees: the version of each level's set
/// (0 where the level sets nothing). Written `g.m.l.d`, e.g. `3.1.7.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct EffectiveVersion(pub [u64; 4]);

impl fmt::Display for EffectiveVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [g, m, l, d] = self.0;
        write!(f, "{g}.{m}.{l}.{d}")
    }
}

impl FromStr for EffectiveVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 4 {
            return Err(format!("{s:?}: a version is four numbers, global.merchant.location.device"));
        }
        let mut out = [0u64; 4];
        for (slot, part) in out.iter_mut().zip(parts) {
            *slot = part.parse().map_err(|_| format!("{s:?}: not a version"))?;
        }
        Ok(EffectiveVersion(out))
    }
}

/// The effective value of every key the schema knows: the most specific
/// level's value, unless a less specific level locked the key; else the
/// default. Keys with neither are absent.
pub fn effective(schema: &Schema, levels: &[(Level, &LevelSet)]) -> BTreeMap<String, (Value, Origin)> {
    let mut sorted: Vec<&(Level, &LevelSet)> = levels.iter().collect();
    sorted.sort_by_key(|(l, _)| *l);
    let mut out = BTreeMap::new();
    for (key, def) in &schema.keys {
        let mut chosen: Option<(Value, Origin)> = def.default.clone().map(|d| (d, Origin::Default));
        for (level, set) in &sorted {
            if let Some(v) = set.values.get(key) {
                chosen = Some((v.clone(), Origin::from(*level)));
            }
            if set.locked.contains(key) {
                break;
            }
        }
        if let Some(c) = chosen {
            out.insert(key.clone(), c);
        }
    }
    out
}

/// Whether setting `key` at `level` is blocked by a lock at a less specific level.
pub fn locked_above(levels: &[(Level, &LevelSet)], key: &str, level: Level) -> Option<Level> {
    levels.iter().filter(|(l, s)| *l < level && s.locked.contains(key)).map(|(l, _)| *l).min()
}

/// The key-level change from one effective set to another.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParamDiff {
    /// Keys new or with a new value, with that value.
    pub changed: BTreeMap<String, Value>,
    /// Keys no longer set (the terminal falls back to its own default).
    pub removed: Vec<String>,
}

impl ParamDiff {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

pub fn diff(old: &BTreeMap<String, Value>, new: &BTreeMap<String, Value>) -> ParamDiff {
    ParamDiff {
        changed: new
            .iter()
            .filter(|(k, v)| old.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        removed: old.keys().filter(|k| !new.contains_key(*k)).cloned().collect(),
    }
}

/// What people see of a value: secrets only as set.
pub fn shown(schema: &Schema, key: &str, value: &Value) -> Value {
    if schema.is_secret(key) { Value::from("(set)") } else { value.clone() }
}

/// A change asked of what one level sets for one scope.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub set: &'a BTreeMap<String, Value>,
    pub unset: &'a [String],
    pub lock: &'a [String],
    pub unlock: &'a [String],
}

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeRefusal {
    /// The key is locked at `at` (this level, against a merchant's user; or
    /// a less specific level, against anyone).
    Locked {
        key: String,
        at: Level,
    },
    Invalid(ParamError),
}

/// What `level` sets after `change`, from what it sets now (`current`)
/// and what the less specific levels set (`above`). An operator may change
/// a key locked at this very level (an operator locked it); nobody sets a
/// key locked above.
pub fn apply_change(
    schema: &Schema,
    above: &[(Level, &LevelSet)],
    current: &LevelSet,
    level: Level,
    operator: bool,
    change: Change<'_>,
) -> Result<LevelSet, ChangeRefusal> {
    for key in change.set.keys().chain(change.unset) {
        if !operator && current.locked.contains(key) {
            return Err(ChangeRefusal::Locked { key: key.clone(), at: level });
        }
    }
    let mut next = current.clone();
    for (key, value) in change.set {
        schema.check(key, value, level).map_err(ChangeRefusal::Invalid)?;
        if let Some(at) = locked_above(above, key, level) {
            return Err(ChangeRefusal::Locked { key: key.clone(), at });
        }
        next.values.insert(key.clone(), value.clone());
    }
    for key in change.unset.iter().chain(change.lock).chain(change.unlock) {
        if !schema.keys.contains_key(key) {
            return Err(ChangeRefusal::Invalid(refuse(key, "unknown parameter")));
        }
    }
    for key in change.unset {
        next.values.remove(key);
    }
    next.locked.extend(change.lock.iter().cloned());
    for key in change.unlock {
        next.locked.remove(key);
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set(values: &[(&str, Value)], locked: &[&str]) -> LevelSet {
        LevelSet {
            values: values.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            locked: locked.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    #[test]
    fn a_change_is_refused_where_a_lock_stands_and_applied_otherwise() {
        let s = Schema::terminal();
        let global = set(&[("receipt.header", json!("G"))], &["receipt.footer"]);
        let here = set(&[("receipt.header", json!("L"))], &["receipt.header"]);
        let above = [(Level::Global, &global)];
        let values = BTreeMap::from([("receipt.header".to_owned(), json!("New"))]);
        let none: [String; 0] = [];
        let setting = Change { set: &values, unset: &none, lock: &none, unlock: &none };
        // Locked at this very level: a merchant's user may not, an operator may.
        assert_eq!(
            apply_change(&s, &above, &here, Level::Location, false, setting),
            Err(ChangeRefusal::Locked { key: "receipt.header".into(), at: Level::Location })
        );
        let next = apply_change(&s, &above, &here, Level::Location, true, setting).unwrap();
        assert_eq!(next.values["receipt.header"], json!("New"));
        assert!(next.locked.contains("receipt.header"), "a change of value keeps the lock");
        // Locked above: nobody sets it here.
        let footer = BTreeMap::from([("receipt.footer".to_owned(), json!("F"))]);
        let refused = apply_change(
            &s,
            &above,
            &LevelSet::default(),
            Level::Location,
            true,
            Change { set: &footer, unset: &none, lock: &none, unlock: &none },
        );
        assert_eq!(refused, Err(ChangeRefusal::Locked { key: "receipt.footer".into(), at: Level::Global }));
        // Unset, lock and unlock name known keys only; they apply in place.
        let unknown = ["nope".to_owned()];
        assert!(matches!(
            apply_change(&s, &above, &here, Level::Location, true, Change { set: &BTreeMap::new(), unset: &unknown, lock: &none, unlock: &none }),
            Err(ChangeRefusal::Invalid(e)) if e.key == "nope"
        ));
        let header = ["receipt.header".to_owned()];
        let next = apply_change(
            &s,
            &above,
            &here,
            Level::Location,
            true,
            Change { set: &BTreeMap::new(), unset: &header, lock: &none, unlock: &header },
        )
        .unwrap();
        assert_eq!(next, LevelSet::default());
    }

    #[test]
    fn the_built_in_schema_is_valid() {
        Schema::terminal().validate().unwrap();
    }

    #[test]
    fn values_are_checked_against_the_schema() {
        let s = Schema::terminal();
        s.check("receipt.print_customer_copy", &json!(false), Level::Location).unwrap();
        let key_of = |r: Result<(), ParamError>| r.unwrap_err().key;
        assert_eq!(
            key_of(s.check("receipt.print_customer_copy", &json!("no"), Level::Location)),
            "receipt.print_customer_copy"
        );
        assert_eq!(key_of(s.check("nope", &json!(1), Level::Global)), "nope");
        assert!(s.check(CONTACT_INTERVAL_KEY, &json!(10), Level::Global).is_err(), "below the range");
        assert!(
            s.check(CONTACT_INTERVAL_KEY, &json!(600), Level::Device).is_err(),
            "not at the device level"
        );
        assert!(s.check("receipt.logo", &json!("not base64!"), Level::Location).is_err());
        assert!(s.check("receipt.logo", &json!("iVBORw0KGgo="), Level::Location).is_ok());
        assert_eq!(parse_value(&s, CONTACT_INTERVAL_KEY, "900").unwrap(), json!(900));
        assert_eq!(parse_value(&s, "receipt.print_customer_copy", "off").unwrap(), json!(false));
    }

    #[test]
    fn the_most_specific_level_wins_unless_locked_above() {
        let s = Schema::terminal();
        let global = set(&[("receipt.header", json!("G"))], &[]);
        let merchant =
            set(&[("receipt.header", json!("M")), ("receipt.footer", json!("MF"))], &["receipt.footer"]);
        let location = set(&[("receipt.header", json!("L")), ("receipt.footer", json!("LF"))], &[]);
        let levels = [(Level::Global, &global), (Level::Merchant, &merchant), (Level::Location, &location)];
        let eff = effective(&s, &levels);
        assert_eq!(eff["receipt.header"], (json!("L"), Origin::Location));
        assert_eq!(eff["receipt.footer"], (json!("MF"), Origin::Merchant), "locked at the merchant level");
        assert_eq!(eff[MERCHANT_PASSWORD_KEY], (json!("99999"), Origin::Default));
        assert!(!eff.contains_key("receipt.logo"));
        assert_eq!(locked_above(&levels, "receipt.footer", Level::Device), Some(Level::Merchant));
        assert_eq!(locked_above(&levels, "receipt.footer", Level::Merchant), None);
    }

    #[test]
    fn diffs_and_versions() {
        let old = BTreeMap::from([("a".to_owned(), json!(1)), ("b".to_owned(), json!(2))]);
        let new = BTreeMap::from([
            ("a".to_owned(), json!(1)),
            ("b".to_owned(), json!(3)),
            ("c".to_owned(), json!(4)),
        ]);
        let d = diff(&old, &new);
        assert_eq!(d.changed, BTreeMap::from([("b".to_owned(), json!(3)), ("c".to_owned(), json!(4))]));
        assert!(d.removed.is_empty());
        assert_eq!(diff(&new, &old).removed, vec!["c".to_owned()]);
        assert!(diff(&old, &old).is_empty());
        let v: EffectiveVersion = "3.1.7.0".parse().unwrap();
        assert_eq!(v.to_string(), "3.1.7.0");
        assert!("3.1.7".parse::<EffectiveVersion>().is_err());
    }

    #[test]
    fn the_merchant_password_is_four_to_twelve_digits() {
        let s = Schema::terminal();
        for refused in ["", "123", "12a45", " 1234", "1234567890123", "١٢٣٤٥"] {
            assert!(s.check(MERCHANT_PASSWORD_KEY, &json!(refused), Level::Device).is_err(), "{refused:?}");
        }
        for accepted in ["2468", "70417", "123456789012"] {
            s.check(MERCHANT_PASSWORD_KEY, &json!(accepted), Level::Device).unwrap();
        }
        // A schema without the new bounds (stored before them) reads as it was.
        let old: ParamType = serde_json::from_value(json!({"type": "secret", "max_len": 32})).unwrap();
        assert_eq!(old, ParamType::Secret { max_len: 32, min_len: 0, digits: false });
        assert_eq!(serde_json::to_value(&old).unwrap(), json!({"type": "secret", "max_len": 32}));
    }

    #[test]
    fn weak_merchant_passwords_are_named() {
        assert_eq!(weak_pin_reason("99999"), Some("default"));
        assert_eq!(weak_pin_reason("12345"), Some("sequence"));
        assert_eq!(weak_pin_reason("6543"), Some("sequence"));
        assert_eq!(weak_pin_reason("0000"), Some("repeated_digit"));
        assert_eq!(weak_pin_reason("70417"), None);
        assert_eq!(weak_pin_reason("13579"), None);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        const KEY: &str = "receipt.header";

        /// Per level: whether it sets the key (to a value naming the level), whether it locks it.
        fn levels() -> impl Strategy<Value = Vec<(Level, bool, bool)>> {
            prop::collection::vec((any::<bool>(), any::<bool>()), 4).prop_map(|flags| {
                Level::ALL.into_iter().zip(flags).map(|(level, (sets, locks))| (level, sets, locks)).collect()
            })
        }

        fn sets(levels: &[(Level, bool, bool)]) -> Vec<(Level, LevelSet)> {
            levels
                .iter()
                .map(|(level, sets, locks)| {
                    let values = if *sets {
                        BTreeMap::from([(KEY.to_owned(), json!(level.as_str()))])
                    } else {
                        BTreeMap::new()
                    };
                    let locked = if *locks { [KEY.to_owned()].into() } else { BTreeSet::new() };
                    (*level, LevelSet { values, locked })
                })
                .collect()
        }

        proptest! {
            #[test]
            fn a_value_locked_at_a_less_specific_level_always_wins(levels in levels(), shuffle in any::<u64>()) {
                let owned = sets(&levels);
                let mut refs: Vec<(Level, &LevelSet)> = owned.iter().map(|(l, s)| (*l, s)).collect();
                // The order levels are given in does not matter.
                refs.rotate_left((shuffle % 4) as usize);
                let got = effective(&Schema::terminal(), &refs)[KEY].clone();
                let first_lock = levels.iter().find(|(_, _, locks)| *locks).map(|(l, _, _)| *l);
                // The most specific level that sets the key, among those a lock does not hide.
                let visible = levels
                    .iter()
                    .filter(|(l, sets, _)| *sets && first_lock.is_none_or(|lock| *l <= lock))
                    .map(|(l, _, _)| *l)
                    .max();
                let want = match visible {
                    Some(level) => (json!(level.as_str()), Origin::from(level)),
                    None => (json!(""), Origin::Default),
                };
                prop_assert_eq!(got, want);
                if let Some(lock) = first_lock {
                    for level in Level::ALL.into_iter().filter(|l| *l > lock) {
                        prop_assert_eq!(locked_above(&refs, KEY, level), Some(lock));
                    }
                }
            }
        }
    }

    #[test]
    fn secrets_are_shown_as_set() {
        let s = Schema::terminal();
        assert_eq!(shown(&s, MERCHANT_PASSWORD_KEY, &json!("12345")), json!("(set)"));
        assert_eq!(shown(&s, "receipt.header", &json!("Hi")), json!("Hi"));
    }
}
