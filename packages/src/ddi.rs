//! The rules that map hawkBit's DDI vocabulary onto this TMS's, pure: how
//! long a device sleeps, how an action's type reads as `download`/`update`,
//! what a device's feedback means for the action, and how reported
//! attributes merge.

use std::collections::BTreeMap;

use crate::contact::ActionType;
use crate::wire::ddi::{FeedbackStatus, Progress};

/// `HH:MM:SS`, as hawkBit gives `config.polling.sleep` (hours past 99 are
/// written in full; a day is the longest this server asks for anyway).
pub fn polling_sleep(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3_600, secs / 60 % 60, secs % 60)
}

/// `download` and `update` of a deployment's action type: a download-only
/// deployment downloads at once and leaves the installation to the device
/// (hawkBit's `update: skip`); a soft one lets the device choose when
/// (`attempt`); a forced one installs now.
pub fn handling(action: ActionType) -> (&'static str, &'static str) {
    match action {
        ActionType::Forced => ("forced", "forced"),
        ActionType::Soft => ("attempt", "attempt"),
        ActionType::DownloadOnly => ("forced", "skip"),
    }
}

/// What a device's feedback on an action means here: the action status it
/// records (one of `tms_packages::wire::contact::ACTION_STATUSES`), with a
/// progress and, for a failure, an error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionReport {
    pub status: &'static str,
    pub progress_percent: Option<u8>,
    pub error_code: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackError {
    pub field: &'static str,
    pub message: String,
}

fn percent(progress: Option<Progress>) -> Option<u8> {
    let p = progress?;
    if p.of == 0 {
        return None;
    }
    Some((p.cnt.min(p.of).saturating_mul(100) / p.of) as u8)
}

/// The details a device sent, joined and clipped for the action's message.
fn message_of(status: &FeedbackStatus) -> Option<String> {
    if status.details.is_empty() {
        return None;
    }
    Some(status.details.join("; ").chars().take(500).collect())
}

/// Maps feedback on a deployment action. `closed` with `success` installed
/// it; `failure` at any step, `rejected` and `canceled` (the device gave up
/// on its own) failed it; `download`, `scheduled` and `downloaded` say where
/// the download stands; `proceeding` and `resumed` that it installs.
pub fn deployment_feedback(status: &FeedbackStatus) -> Result<ActionReport, FeedbackError> {
    let finished = status.result.finished.as_str();
    if !["success", "failure", "none"].contains(&finished) {
        return Err(FeedbackError {
            field: "status.result.finished",
            message: "one of success, failure, none".into(),
        });
    }
    let execution = status.execution.as_str();
    let failed = |code: &str| ActionReport {
        status: "failed",
        progress_percent: None,
        error_code: Some(code.to_owned()),
        message: message_of(status),
    };
    let step = |s: &'static str| ActionReport {
        status: s,
        progress_percent: percent(status.result.progress),
        error_code: None,
        message: message_of(status),
    };
    Ok(match (execution, finished) {
        ("closed" | "proceeding" | "download" | "downloaded" | "scheduled" | "resumed", "failure") => {
            failed(&status.code.map_or_else(|| "ddi_failure".to_owned(), |c| format!("ddi_{c}")))
        }
        ("closed", "success") => {
            ActionReport { status: "installed", progress_percent: Some(100), ..step("installed") }
        }
        ("closed", _) => {
            return Err(FeedbackError {
                field: "status.result.finished",
                message: "a closed action finished with success or failure".into(),
            });
        }
        ("rejected", _) => failed("ddi_rejected"),
        ("canceled", _) => failed("ddi_canceled"),
        ("download" | "scheduled", _) => step("downloading"),
        ("downloaded", _) => step("downloaded"),
        ("proceeding" | "resumed", _) => step("installing"),
        _ => {
            return Err(FeedbackError {
                field: "status.execution",
                message:
                    "one of closed, proceeding, canceled, scheduled, rejected, resumed, downloaded, download"
                        .into(),
            });
        }
    })
}

/// What a device answers to a cancellation: `Some(true)` it stopped (closed
/// with success, or canceled), `Some(false)` it could not (rejected, or a
/// failure), `None` it is still working on it.
pub fn cancel_feedback(status: &FeedbackStatus) -> Result<Option<bool>, FeedbackError> {
    match (status.execution.as_str(), status.result.finished.as_str()) {
        ("closed" | "canceled", "success" | "none") => Ok(Some(true)),
        ("rejected", _) | (_, "failure") => Ok(Some(false)),
        ("proceeding" | "scheduled" | "resumed" | "download" | "downloaded", _) => Ok(None),
        ("closed" | "canceled", _) => Err(FeedbackError {
            field: "status.result.finished",
            message: "one of success, failure, none".into(),
        }),
        _ => Err(FeedbackError {
            field: "status.execution",
            message:
                "one of closed, proceeding, canceled, scheduled, rejected, resumed, downloaded, download"
                    .into(),
        }),
    }
}

/// Attributes after a `configData` report: `merge` (hawkBit's default)
/// adds and overwrites, `replace` keeps only what was sent, `remove` takes
/// the keys sent away.
pub fn apply_attributes(
    held: &BTreeMap<String, String>,
    mode: Option<&str>,
    data: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, FeedbackError> {
    let mut out = held.clone();
    match mode.unwrap_or("merge") {
        "merge" => out.extend(data.iter().map(|(k, v)| (k.clone(), v.clone()))),
        "replace" => out = data.clone(),
        "remove" => out.retain(|k, _| !data.contains_key(k)),
        _ => return Err(FeedbackError { field: "mode", message: "one of merge, replace, remove".into() }),
    }
    if out.len() > MAX_ATTRIBUTES {
        return Err(FeedbackError { field: "data", message: format!("at most {MAX_ATTRIBUTES} attributes") });
    }
    if let Some((k, _)) =
        out.iter().find(|(k, v)| k.is_empty() || k.len() > MAX_ATTRIBUTE_KEY || v.len() > MAX_ATTRIBUTE_VALUE)
    {
        return Err(FeedbackError {
            field: "data",
            message: format!(
                "{k:?}: keys of 1 to {MAX_ATTRIBUTE_KEY} bytes, values up to {MAX_ATTRIBUTE_VALUE} bytes"
            ),
        });
    }
    Ok(out)
}

/// hawkBit's own limits on target attributes.
pub const MAX_ATTRIBUTES: usize = 100;
pub const MAX_ATTRIBUTE_KEY: usize = 128;
pub const MAX_ATTRIBUTE_VALUE: usize = 128;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::ddi::FeedbackResult;

    fn status(execution: &str, finished: &str) -> FeedbackStatus {
        FeedbackStatus {
            execution: execution.into(),
            result: FeedbackResult { finished: finished.into(), progress: None },
            details: vec![],
            code: None,
        }
    }

    #[test]
    fn sleep_reads_as_hawkbit_writes_it() {
        assert_eq!(polling_sleep(300), "00:05:00");
        assert_eq!(polling_sleep(3_905), "01:05:05");
        assert_eq!(polling_sleep(86_400), "24:00:00");
    }

    #[test]
    fn download_only_downloads_and_leaves_the_update() {
        assert_eq!(handling(ActionType::DownloadOnly), ("forced", "skip"));
        assert_eq!(handling(ActionType::Forced), ("forced", "forced"));
        assert_eq!(handling(ActionType::Soft), ("attempt", "attempt"));
    }

    #[test]
    fn feedback_maps_to_action_states() {
        let report = |e, f| deployment_feedback(&status(e, f)).map(|r| r.status);
        assert_eq!(report("closed", "success"), Ok("installed"));
        assert_eq!(report("closed", "failure"), Ok("failed"));
        assert_eq!(report("proceeding", "none"), Ok("installing"));
        assert_eq!(report("resumed", "none"), Ok("installing"));
        assert_eq!(report("download", "none"), Ok("downloading"));
        assert_eq!(report("downloaded", "none"), Ok("downloaded"));
        assert_eq!(report("rejected", "none"), Ok("failed"));
        assert_eq!(report("canceled", "none"), Ok("failed"));
        assert!(report("closed", "none").is_err());
        assert!(report("finished", "success").is_err());
        assert!(report("closed", "maybe").is_err());
    }

    #[test]
    fn a_failure_carries_the_device_code_and_details() {
        let mut s = status("closed", "failure");
        s.code = Some(-3);
        s.details = vec!["checksum".into(), "bad image".into()];
        let r = deployment_feedback(&s).unwrap();
        assert_eq!(r.error_code.as_deref(), Some("ddi_-3"));
        assert_eq!(r.message.as_deref(), Some("checksum; bad image"));
    }

    #[test]
    fn cancel_answers() {
        assert_eq!(cancel_feedback(&status("closed", "success")), Ok(Some(true)));
        assert_eq!(cancel_feedback(&status("canceled", "none")), Ok(Some(true)));
        assert_eq!(cancel_feedback(&status("rejected", "none")), Ok(Some(false)));
        assert_eq!(cancel_feedback(&status("proceeding", "none")), Ok(None));
        assert!(cancel_feedback(&status("nonsense", "none")).is_err());
    }

    #[test]
    fn attributes_merge_replace_and_remove() {
        let held = BTreeMap::from([("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]);
        let sent = BTreeMap::from([("b".to_owned(), "3".to_owned()), ("c".to_owned(), "4".to_owned())]);
        let merged = apply_attributes(&held, None, &sent).unwrap();
        assert_eq!(merged.len(), 3);
        assert_eq!(merged["b"], "3");
        assert_eq!(apply_attributes(&held, Some("replace"), &sent).unwrap(), sent);
        let removed = apply_attributes(&held, Some("remove"), &sent).unwrap();
        assert_eq!(removed, BTreeMap::from([("a".to_owned(), "1".to_owned())]));
        assert!(apply_attributes(&held, Some("append"), &sent).is_err());
    }

    proptest! {
        #[test]
        fn progress_stays_a_percentage(cnt in 0u64..u64::MAX, of in 0u64..u64::MAX) {
            let mut s = status("proceeding", "none");
            s.result.progress = Some(Progress { cnt, of });
            let r = deployment_feedback(&s).unwrap();
            prop_assert!(r.progress_percent.is_none_or(|p| p <= 100));
        }

        #[test]
        fn the_sleep_reads_back(secs in 0u64..360_000) {
            let text = polling_sleep(secs);
            let parts: Vec<u64> = text.split(':').map(|p| p.parse().unwrap()).collect();
            prop_assert_eq!(parts.len(), 3);
            prop_assert_eq!(parts[0] * 3_600 + parts[1] * 60 + parts[2], secs);
        }

        #[test]
        fn merge_keeps_every_key_sent(keys in proptest::collection::btree_map("[a-z]{1,8}", "[a-z]{0,8}", 0..20)) {
            let merged = apply_attributes(&BTreeMap::new(), Some("merge"), &keys).unwrap();
            prop_assert_eq!(&merged, &keys);
            let removed = apply_attributes(&merged, Some("remove"), &keys).unwrap();
            prop_assert!(removed.is_empty());
        }
    }
}
