//! The pages' one catalogue of texts, per language, and the formatting of
//! dates, numbers and amounts per locale.
//!
//! Texts live in `server/locales/<lang>.toml` (tables flatten to dotted
//! keys); a test fails when a key is in one language and not another, or a
//! template uses a key that no language has.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::NaiveDateTime;

/// A language the pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    Fr,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Fr, Lang::En];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    /// The language's own name, as a switcher shows it.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Fr => "Français",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        let primary = code.trim().split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "fr" => Some(Lang::Fr),
            _ => None,
        }
    }

    /// The first language of an `Accept-Language` header that the pages
    /// have, by the header's weights; French (the first market) otherwise.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(header) = header else { return Lang::Fr };
        let mut ranked: Vec<(f32, usize, Lang)> = header
            .split(',')
            .enumerate()
            .filter_map(|(i, part)| {
                let mut pieces = part.split(';');
                let lang = Lang::parse(pieces.next()?)?;
                let weight = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (weight > 0.0).then_some((weight, i, lang))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked.first().map(|r| r.2).unwrap_or(Lang::Fr)
    }

    /// The text of `key`; the key itself if no catalogue has it (a test
    /// keeps that from shipping).
    pub fn text(self, key: &str) -> &'static str {
        CATALOGUES.get(self).get(key).or_else(|| CATALOGUES.get(Lang::En).get(key)).map_or_else(
            || {
                tracing::warn!(key, lang = self.code(), "missing text");
                "\u{2026}"
            },
            String::as_str,
        )
    }

    pub fn try_text(self, key: &str) -> Option<&'static str> {
        CATALOGUES.get(self).get(key).map(String::as_str)
    }

    /// The catalogue's own copy of `key`, if it has one.
    pub fn try_key(self, key: &str) -> Option<&'static str> {
        CATALOGUES.get(self).get_key_value(key).map(|(k, _)| k.as_str())
    }

    /// The text of `key` with `{1}`, `{2}`, … replaced by `args`.
    pub fn format(self, key: &str, args: &[&dyn std::fmt::Display]) -> String {
        let mut out = self.text(key).to_owned();
        for (i, arg) in args.iter().enumerate() {
            out = out.replace(&format!("{{{}}}", i + 1), &arg.to_string());
        }
        out
    }

    /// The text of `key` for a count `n` (written as `{1}`, with this
    /// language's separators), then `rest` as `{2}`, …: the `<key>_one`
    /// form where the language says "one" (English: 1; French: 0 and 1).
    pub fn count_format(self, key: &str, n: i64, rest: &[&dyn std::fmt::Display]) -> String {
        let one = match self {
            Lang::En => n == 1,
            Lang::Fr => n == 0 || n == 1,
        };
        let singular = format!("{key}_one");
        let key = if one && self.try_text(&singular).is_some() { singular.as_str() } else { key };
        let count = self.number(n);
        let mut args: Vec<&dyn std::fmt::Display> = vec![&count];
        args.extend_from_slice(rest);
        self.format(key, &args)
    }

    /// A moment (kept in UTC) in French time, as people of this language
    /// write it.
    pub fn date_time(self, at: NaiveDateTime) -> String {
        let local = paris::from_utc(at);
        match self {
            Lang::Fr => local.format("%d/%m/%Y %H:%M").to_string(),
            Lang::En => local.format("%-d %b %Y, %H:%M").to_string(),
        }
    }

    /// An RFC 3339 time from a view, formatted; shown as is if unreadable.
    pub fn date_time_text(self, rfc3339: &str) -> String {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .map(|t| self.date_time(t.naive_utc()))
            .unwrap_or_else(|_| rfc3339.to_owned())
    }

    /// A whole number with this language's thousands separator.
    pub fn number(self, n: i64) -> String {
        let digits = n.unsigned_abs().to_string();
        let separator = match self {
            Lang::Fr => "\u{202f}",
            Lang::En => ",",
        };
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push_str(separator);
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    }

    /// An amount in minor units (cents) of `currency` (ISO 4217).
    pub fn amount(self, minor: i64, currency: &str) -> String {
        let decimals = minor_digits(currency);
        let scale = 10i64.pow(decimals);
        let whole = self.number(minor.abs() / scale);
        let sign = if minor < 0 { "-" } else { "" };
        let symbol = match currency {
            "EUR" => "€",
            "USD" => "$",
            "GBP" => "£",
            other => other,
        };
        let fraction = if decimals == 0 {
            String::new()
        } else {
            let point = if self == Lang::Fr { ',' } else { '.' };
            format!("{point}{:0width$}", minor.abs() % scale, width = decimals as usize)
        };
        match self {
            Lang::Fr => format!("{sign}{whole}{fraction}\u{a0}{symbol}"),
            Lang::En if symbol.chars().count() == 1 => format!("{sign}{symbol}{whole}{fraction}"),
            Lang::En => format!("{sign}{whole}{fraction} {symbol}"),
        }
    }
}

/// French time (the portal's merchants are in France first): Central
/// European Time, UTC+1, and summer time, UTC+2, from 01:00 UTC on the last
/// Sunday of March to 01:00 UTC on the last Sunday of October (the EU rule
/// since 1996). Times are stored in UTC; pages show and take them in this.
pub mod paris {
    use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};

    fn last_sunday(year: i32, month: u32) -> NaiveDate {
        let next_month = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)
        }
        .expect("a valid month");
        let last = next_month.pred_opt().expect("a day before");
        last - Duration::days(last.weekday().num_days_from_sunday() as i64)
    }

    /// Whether summer time is in force at this UTC moment.
    pub fn summer_time(utc: NaiveDateTime) -> bool {
        let year = utc.year();
        let start = last_sunday(year, 3).and_hms_opt(1, 0, 0).expect("01:00");
        let end = last_sunday(year, 10).and_hms_opt(1, 0, 0).expect("01:00");
        utc >= start && utc < end
    }

    pub fn offset(utc: NaiveDateTime) -> Duration {
        Duration::hours(if summer_time(utc) { 2 } else { 1 })
    }

    pub fn from_utc(utc: NaiveDateTime) -> NaiveDateTime {
        utc + offset(utc)
    }

    /// The UTC moment a French day starts. The clocks change at 01:00 UTC
    /// on a Sunday, never near a French midnight, so the offset an hour
    /// before that midnight is the one in force at it.
    pub fn day_start_utc(day: NaiveDate) -> NaiveDateTime {
        let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
        midnight - offset(midnight - Duration::hours(1))
    }

    /// Today in France.
    pub fn today(utc_now: NaiveDateTime) -> NaiveDate {
        from_utc(utc_now).date()
    }
}

/// Decimal places of a currency's minor unit.
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "XOF" | "XAF" | "XPF" | "CLP" | "ISK" => 0,
        "BHD" | "KWD" | "OMR" | "TND" | "JOD" | "IQD" | "LYD" => 3,
        _ => 2,
    }
}

pub struct Catalogues {
    en: BTreeMap<String, String>,
    fr: BTreeMap<String, String>,
}

impl Catalogues {
    pub fn get(&self, lang: Lang) -> &BTreeMap<String, String> {
        match lang {
            Lang::En => &self.en,
            Lang::Fr => &self.fr,
        }
    }
}

pub const SOURCES: [(Lang, &str); 2] =
    [(Lang::En, include_str!("../../locales/en.toml")), (Lang::Fr, include_str!("../../locales/fr.toml"))];

/// Parses one catalogue file into dotted keys.
pub fn parse_catalogue(source: &str) -> Result<BTreeMap<String, String>, String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) -> Result<(), String> {
        for (key, value) in table {
            let full = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            match value {
                toml::Value::String(text) => {
                    out.insert(full, text.clone());
                }
                toml::Value::Table(inner) => walk(&full, inner, out)?,
                other => return Err(format!("{full}: a text or a table, not {}", other.type_str())),
            }
        }
        Ok(())
    }
    let table: toml::Table = source.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut out = BTreeMap::new();
    walk("", &table, &mut out)?;
    Ok(out)
}

/// Read once: the catalogues are part of the binary, like the templates.
static CATALOGUES: LazyLock<Catalogues> = LazyLock::new(|| {
    let load = |lang: Lang| {
        let source = SOURCES.iter().find(|(l, _)| *l == lang).expect("every language has a file").1;
        parse_catalogue(source).unwrap_or_else(|e| panic!("locales/{}.toml: {e}", lang.code()))
    };
    Catalogues { en: load(Lang::En), fr: load(Lang::Fr) }
});

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    #[test]
    fn every_language_has_every_key() {
        let parsed: Vec<(Lang, BTreeMap<String, String>)> =
            SOURCES.iter().map(|(lang, src)| (*lang, parse_catalogue(src).expect("parses"))).collect();
        for (lang, keys) in &parsed {
            for (other, other_keys) in &parsed {
                let missing: Vec<&String> = other_keys.keys().filter(|k| !keys.contains_key(*k)).collect();
                assert!(
                    missing.is_empty(),
                    "{} lacks keys that {} has: {missing:?}",
                    lang.code(),
                    other.code()
                );
            }
            let empty: Vec<&String> =
                keys.iter().filter(|(_, v)| v.trim().is_empty()).map(|(k, _)| k).collect();
            assert!(empty.is_empty(), "{} has empty texts: {empty:?}", lang.code());
        }
    }

    #[test]
    fn every_key_a_template_or_page_uses_exists() {
        let en = parse_catalogue(SOURCES[0].1).expect("parses");
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
        let mut files = Vec::new();
        let mut dirs: Vec<std::path::PathBuf> =
            ["templates", "src/web"].iter().map(|d| format!("{root}{d}").into()).collect();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if !path.ends_with("i18n.rs") {
                    // i18n.rs names the markers themselves.
                    files.push(path);
                }
            }
        }
        let mut missing = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable");
            // ctx.t("key"), ctx.t1("key", …), lang.text("key"), lang.format("key", …).
            for marker in [
                ".t(\"",
                ".t1(\"",
                ".t2(\"",
                ".n1(\"",
                ".n2(\"",
                ".text(\"",
                ".format(\"",
                ".count_format(\"",
            ] {
                for (i, _) in text.match_indices(marker) {
                    let rest = &text[i + marker.len()..];
                    let key = &rest[..rest.find('"').expect("closing quote")];
                    let looks_like_key = key.contains('.')
                        && key
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._".contains(c));
                    if looks_like_key && !en.contains_key(key) {
                        missing.push(format!("{}: {key}", file.display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "keys used but not in the catalogue: {missing:#?}");
    }

    #[test]
    fn accept_language_picks_by_weight() {
        assert_eq!(Lang::from_accept_language(Some("en-GB,en;q=0.9,fr;q=0.8")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("de-DE,fr;q=0.5,en;q=0.7")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("fr-FR")), Lang::Fr);
        assert_eq!(Lang::from_accept_language(Some("de")), Lang::Fr);
        assert_eq!(Lang::from_accept_language(None), Lang::Fr);
    }

    #[test]
    fn french_time_follows_the_eu_summer_time_rule() {
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        // 2026: summer time from 29 March 01:00 UTC to 25 October 01:00 UTC.
        assert_eq!(paris::from_utc(at("2026-03-29 00:59")), at("2026-03-29 01:59"));
        assert_eq!(paris::from_utc(at("2026-03-29 01:00")), at("2026-03-29 03:00"));
        assert_eq!(paris::from_utc(at("2026-10-25 00:59")), at("2026-10-25 02:59"));
        assert_eq!(paris::from_utc(at("2026-10-25 01:00")), at("2026-10-25 02:00"));
        assert_eq!(paris::from_utc(at("2026-11-30 23:30")), at("2026-12-01 00:30"));
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(paris::day_start_utc(day("2026-07-14")), at("2026-07-13 22:00"));
        assert_eq!(paris::day_start_utc(day("2026-12-25")), at("2026-12-24 23:00"));
        // The days the clocks change start at the offset of the night before.
        assert_eq!(paris::day_start_utc(day("2026-03-29")), at("2026-03-28 23:00"));
        assert_eq!(paris::day_start_utc(day("2026-10-25")), at("2026-10-24 22:00"));
        assert_eq!(paris::today(at("2026-11-30 23:30")), day("2026-12-01"));
        assert_eq!(Lang::Fr.date_time(at("2026-07-14 10:00")), "14/07/2026 12:00");
        assert_eq!(Lang::En.date_time(at("2026-01-05 10:00")), "5 Jan 2026, 11:00");
    }

    #[test]
    fn amounts_and_numbers_follow_the_locale() {
        assert_eq!(Lang::Fr.amount(123456, "EUR"), "1\u{202f}234,56\u{a0}€");
        assert_eq!(Lang::En.amount(123456, "EUR"), "€1,234.56");
        assert_eq!(Lang::En.amount(-5, "EUR"), "-€0.05");
        assert_eq!(Lang::Fr.amount(500, "JPY"), "500\u{a0}JPY");
        assert_eq!(Lang::En.number(1_000_000), "1,000,000");
        assert_eq!(Lang::Fr.number(999), "999");
        assert_eq!(Lang::En.count_format("terminals.count", 1, &[]), "1 terminal");
        assert_eq!(Lang::En.count_format("terminals.count", 0, &[]), "0 terminals");
        assert_eq!(Lang::Fr.count_format("terminals.count", 0, &[]), "0 terminal");
        assert_eq!(Lang::Fr.count_format("terminals.count", 1200, &[]), "1\u{202f}200 terminaux");
    }
}
