//! The store's rules, as pure code: which release a terminal gets, what a
//! search matches, and what a terminal's status is for a store app.

use crate::contact::{Candidate, DeviceFacts, Skip, compatibility};

/// The image types the store accepts for icons and screenshots, told by
/// their first bytes (a declared content type is not trusted).
pub fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The newest release (by version code) the terminal can run, or why none
/// fits: the reason the newest release gave.
pub fn newest_compatible<'a>(device: &DeviceFacts, releases: &'a [Candidate]) -> Result<&'a Candidate, Skip> {
    let mut ordered: Vec<&Candidate> = releases.iter().filter(|c| !c.withdrawn).collect();
    ordered.sort_by_key(|c| std::cmp::Reverse(c.version_code));
    let mut first_reason = None;
    for c in ordered {
        match compatibility(device, c) {
            None => return Ok(c),
            Some(reason) => {
                first_reason.get_or_insert(reason);
            }
        }
    }
    Err(first_reason.unwrap_or(Skip::Withdrawn))
}

/// Every word of the search appears, ignoring case, in one of the fields.
pub fn matches_search(search: &str, fields: &[&str]) -> bool {
    let fields: Vec<String> = fields.iter().map(|f| f.to_lowercase()).collect();
    search.split_whitespace().all(|word| {
        let word = word.to_lowercase();
        fields.iter().any(|f| f.contains(&word))
    })
}

/// What a merchant last asked the store for on one terminal, and the
/// terminal's last report about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRequestState<'a> {
    pub uninstall: bool,
    pub report: Option<&'a str>,
}

/// A terminal's status for a store app, from its inventory and the request.
/// The terminal's `installed` report counts before its next inventory does.
pub fn terminal_status(installed: bool, request: Option<StoreRequestState<'_>>) -> &'static str {
    match request {
        None if installed => "installed",
        None => "not_installed",
        Some(r) if !r.uninstall => match (installed, r.report) {
            (true, _) | (false, Some("installed")) => "installed",
            (false, Some("failed" | "timed_out")) => "failed",
            (false, _) => "requested",
        },
        Some(r) => match (installed, r.report) {
            (false, _) | (true, Some("installed")) => "not_installed",
            (true, Some("failed" | "timed_out")) => "removal_failed",
            (true, _) => "removal_requested",
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn device(model: &str, firmware: &str) -> DeviceFacts {
        DeviceFacts {
            device_id: 1,
            merchant_id: 1,
            location_id: 1,
            model: model.into(),
            firmware: firmware.into(),
            installed: BTreeMap::new(),
        }
    }

    fn release(code: u64, models: &[&str], min_firmware: Option<&str>, withdrawn: bool) -> Candidate {
        Candidate {
            release_id: code as i64,
            app_id: "com.example.tips".into(),
            version: semver::Version::new(code, 0, 0),
            version_code: code,
            models: models.iter().map(|m| m.to_string()).collect(),
            min_firmware: min_firmware.map(str::to_owned),
            withdrawn,
            firmware: false,
        }
    }

    #[test]
    fn the_newest_release_that_fits_the_model_and_firmware_is_chosen() {
        let releases = [
            release(1, &["A920", "A80"], None, false),
            release(2, &["A920"], None, false),
            release(3, &["A920"], Some("10.0"), false),
            release(4, &["A920", "A80"], None, true),
        ];
        assert_eq!(newest_compatible(&device("A920", "10.2"), &releases).unwrap().version_code, 3);
        assert_eq!(newest_compatible(&device("A920", "9.1"), &releases).unwrap().version_code, 2);
        assert_eq!(newest_compatible(&device("A80", "11"), &releases).unwrap().version_code, 1);
        assert_eq!(
            newest_compatible(&device("X990", "11"), &releases),
            Err(Skip::ModelIncompatible { model: "X990".into() })
        );
        assert_eq!(newest_compatible(&device("A920", "1"), &[]), Err(Skip::Withdrawn));
    }

    #[test]
    fn search_needs_every_word_in_some_field() {
        assert!(matches_search("tip", &["Tips & Gratuity", "tipping"]));
        assert!(matches_search("GRATUITY tipping", &["Tips & Gratuity", "tipping"]));
        assert!(!matches_search("tip parking", &["Tips & Gratuity", "tipping"]));
        assert!(matches_search("  ", &["anything"]));
    }

    #[test]
    fn images_are_told_by_their_first_bytes() {
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(image_type(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(image_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(image_type(b"<svg xmlns=..."), None);
    }

    #[test]
    fn a_terminal_status_follows_the_request_and_the_inventory() {
        let install = |report| Some(StoreRequestState { uninstall: false, report });
        let uninstall = |report| Some(StoreRequestState { uninstall: true, report });
        assert_eq!(terminal_status(false, None), "not_installed");
        assert_eq!(terminal_status(true, None), "installed");
        assert_eq!(terminal_status(false, install(None)), "requested");
        assert_eq!(terminal_status(false, install(Some("downloading"))), "requested");
        assert_eq!(terminal_status(false, install(Some("failed"))), "failed");
        assert_eq!(terminal_status(true, install(Some("installed"))), "installed");
        assert_eq!(terminal_status(false, install(Some("installed"))), "installed", "before its inventory");
        assert_eq!(terminal_status(true, uninstall(Some("installed"))), "not_installed");
        assert_eq!(terminal_status(true, uninstall(None)), "removal_requested");
        assert_eq!(terminal_status(true, uninstall(Some("failed"))), "removal_failed");
        assert_eq!(terminal_status(false, uninstall(Some("installed"))), "not_installed");
    }
}
