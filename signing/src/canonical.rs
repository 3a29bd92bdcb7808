//! Canonical JSON of signed documents: object keys sorted by their UTF-8
//! bytes, no whitespace, integers only (no floats), strings escaped the one
//! way serde_json escapes them. The same document always gives the same
//! bytes, whoever serialises it.

use serde_json::Value;

use crate::SigningError;

pub fn to_canonical_json(value: &Value) -> Result<Vec<u8>, SigningError> {
    let mut out = Vec::new();
    write_canonical_json(value, &mut out)?;
    Ok(out)
}

/// A JSON string as serde_json escapes it, written in place (every answer
/// signed goes through here: no allocation per string).
pub fn write_json_string(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Appends the canonical JSON of `value` to `out`, for a document built
/// around it without copying it into a larger `Value` first.
pub fn write_canonical_json(value: &Value, out: &mut Vec<u8>) -> Result<(), SigningError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if n.is_f64() {
                return Err(SigningError::NotCanonical(format!("{n} is not an integer")));
            }
            use std::io::Write;
            write!(out, "{n}").expect("writing to a Vec cannot fail");
        }
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            write_canonical_object(map.iter().map(|(k, v)| (k.as_str(), Member::Value(v))).collect(), out)?
        }
    }
    Ok(())
}

/// A member of an object being written: a JSON value, or JSON already in
/// canonical form (a part many documents share, converted once).
pub enum Member<'a> {
    Value(&'a Value),
    Canonical(&'a [u8]),
}

/// Appends the canonical JSON of an object with these members (their names
/// distinct; a `Canonical` member must be canonical JSON itself).
pub fn write_canonical_object(
    mut members: Vec<(&str, Member<'_>)>,
    out: &mut Vec<u8>,
) -> Result<(), SigningError> {
    members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (name, member)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_string(name, out);
        out.push(b':');
        match member {
            Member::Value(value) => write_canonical_json(value, out)?,
            Member::Canonical(json) => out.extend_from_slice(json),
        }
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The rules docs/terminal-api.md states, byte for byte.
    #[test]
    fn strings_and_numbers_are_written_as_the_terminal_api_page_says() {
        let value = json!({"é/": "Café \u{7f}\u{1f}\n\t\u{8}\u{c}\r\"\\", "b": [-12, 0, 420], "a": null});
        let expected = "{\"a\":null,\"b\":[-12,0,420],\"é/\":\"Café \u{7f}\\u001f\\n\\t\\b\\f\\r\\\"\\\\\"}";
        assert_eq!(String::from_utf8(to_canonical_json(&value).unwrap()).unwrap(), expected);
        assert!(to_canonical_json(&json!({"a": 1.5})).is_err(), "a float has no canonical form");
        assert_eq!(&to_canonical_json(&json!("é")).unwrap()[1..3], [0xc3, 0xa9]);
    }

    #[test]
    fn key_order_and_spacing_do_not_matter() {
        let a: Value =
            serde_json::from_str(r#"{ "b": 1, "a": [true, null, "x\"y"], "c": {"z": 0, "y": -5} }"#).unwrap();
        let b = json!({"c": {"y": -5, "z": 0}, "a": [true, null, "x\"y"], "b": 1});
        let expected = br#"{"a":[true,null,"x\"y"],"b":1,"c":{"y":-5,"z":0}}"#;
        assert_eq!(to_canonical_json(&a).unwrap(), expected);
        assert_eq!(to_canonical_json(&b).unwrap(), expected);
    }

    #[test]
    fn an_object_of_values_and_canonical_parts_is_canonical() {
        let inner = json!({"y": [1, {"b": 2, "a": 1}], "x": "s"});
        let whole = json!({"z": true, "inner": inner, "a": null});
        let part = to_canonical_json(&inner).unwrap();
        let mut out = Vec::new();
        let members = vec![
            ("z", Member::Value(&whole["z"])),
            ("inner", Member::Canonical(&part)),
            ("a", Member::Value(&Value::Null)),
        ];
        write_canonical_object(members, &mut out).unwrap();
        assert_eq!(out, to_canonical_json(&whole).unwrap());
    }

    #[test]
    fn floats_are_refused() {
        assert!(to_canonical_json(&json!({"size": 1.5})).is_err());
        assert!(to_canonical_json(&json!({"size": u64::MAX})).is_ok());
    }
}
