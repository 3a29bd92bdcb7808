//! The canonical JSON of answer bodies, with the part of each release offer
//! converted once per release rather than once per answer: an answer that
//! installs carries the release's manifest, and converting it to a JSON
//! value for every terminal of a rollout (then dropping it) was a twentieth
//! of the server's work while the fleet installed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tms_packages::wire::contact::{AppInstruction, ContactBody, ReleaseOffer};
use tms_signing::{Member, SigningError, to_canonical_json, write_canonical_object};

/// Offers kept converted: a fleet installs a handful of releases at once.
const OFFERS_KEPT: usize = 1_000;

/// An offer and its canonical JSON.
type Converted = Arc<(ReleaseOffer, Vec<u8>)>;

#[derive(Default)]
pub struct BodyWriter {
    /// By release.
    offers: Mutex<HashMap<i64, Converted>>,
}

impl BodyWriter {
    /// The canonical JSON of `body` (the same bytes as that of the whole
    /// body converted to a value). Borrowed mutably only to convert it
    /// without its instructions, which are put back.
    pub fn canonical(&self, body: &mut ContactBody) -> Result<Vec<u8>, SigningError> {
        let apps = std::mem::take(&mut body.apps);
        let firmware = body.firmware.take();
        let rest = serde_json::to_value(&*body);
        body.apps = apps;
        body.firmware = firmware;
        let rest = rest.expect("answers are plain data");
        let mut apps_json = Vec::new();
        if !body.apps.is_empty() {
            apps_json.push(b'[');
            for (i, app) in body.apps.iter().enumerate() {
                if i > 0 {
                    apps_json.push(b',');
                }
                self.instruction(app, &mut apps_json)?;
            }
            apps_json.push(b']');
        }
        let mut firmware_json = Vec::new();
        if let Some(f) = &body.firmware {
            self.instruction(f, &mut firmware_json)?;
        }
        let mut members = members(&rest);
        // Left out when empty, as the body's own serialisation does.
        if !body.apps.is_empty() {
            members.push(("apps", Member::Canonical(&apps_json)));
        }
        if body.firmware.is_some() {
            members.push(("firmware", Member::Canonical(&firmware_json)));
        }
        let mut out = Vec::with_capacity(512 + apps_json.len() + firmware_json.len());
        write_canonical_object(members, &mut out)?;
        Ok(out)
    }

    fn instruction(&self, app: &AppInstruction, out: &mut Vec<u8>) -> Result<(), SigningError> {
        let bare = serde_json::to_value(AppInstruction {
            app_id: app.app_id.clone(),
            change: app.change,
            deployment_id: app.deployment_id,
            action: app.action,
            wifi_only: app.wifi_only,
            release: None,
        })
        .expect("answers are plain data");
        let offer = app.release.as_ref().map(|o| self.offer(o)).transpose()?;
        let mut members = members(&bare);
        if let Some(offer) = &offer {
            members.push(("release", Member::Canonical(&offer.1)));
        }
        write_canonical_object(members, out)
    }

    fn offer(&self, offer: &ReleaseOffer) -> Result<Converted, SigningError> {
        let kept = self.offers.lock().expect("not poisoned").get(&offer.release_id).cloned();
        // Compared whole, so that an offer that changed is never answered
        // with its old JSON.
        if let Some(kept) = kept
            && kept.0 == *offer
        {
            return Ok(kept);
        }
        let json = to_canonical_json(&serde_json::to_value(offer).expect("answers are plain data"))?;
        let converted = Arc::new((offer.clone(), json));
        let mut offers = self.offers.lock().expect("not poisoned");
        if offers.len() >= OFFERS_KEPT {
            offers.clear();
        }
        offers.insert(offer.release_id, converted.clone());
        Ok(converted)
    }
}

fn members(object: &Value) -> Vec<(&str, Member<'_>)> {
    object.as_object().into_iter().flatten().map(|(k, v)| (k.as_str(), Member::Value(v))).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tms_packages::contact::ActionType;
    use tms_packages::releases::ReleaseManifest;
    use tms_packages::wire::contact::ParameterUpdate;

    use super::*;

    fn offer(release_id: i64, version: &str) -> ReleaseOffer {
        ReleaseOffer {
            release_id,
            version: version.into(),
            version_code: 42,
            size: 1_000,
            sha256: "ab".repeat(32),
            manifest: ReleaseManifest {
                app_id: "eu.ccv.salespoint".into(),
                kind: "app".into(),
                version: version.into(),
                version_code: 42,
                artifact_sha256: "ab".repeat(32),
                artifact_size: 1_000,
                models: vec!["A920".into(), "A80".into()],
                min_firmware: Some("PayDroid_8.1.9".into()),
                release_notes: "Fixes \"tips\" — é".into(),
                created_at: "2026-11-28T10:00:00Z".into(),
            },
            signature: "cd".repeat(64),
            key_id: "ef".repeat(32),
            download_path: format!("/api/v1/releases/{release_id}/artifact"),
            delta: None,
        }
    }

    fn instruction(app_id: &str, release: Option<ReleaseOffer>) -> AppInstruction {
        use tms_packages::contact::ChangeKind;
        AppInstruction {
            app_id: app_id.into(),
            change: if release.is_some() { ChangeKind::Update } else { ChangeKind::Remove },
            deployment_id: 7,
            action: ActionType::Soft,
            wifi_only: true,
            release,
        }
    }

    fn expected(body: &ContactBody) -> Vec<u8> {
        to_canonical_json(&serde_json::to_value(body).unwrap()).unwrap()
    }

    #[test]
    fn a_body_is_written_as_its_whole_conversion_would_be() {
        let writer = BodyWriter::default();
        let mut firmware = instruction("firmware", Some(offer(3, "9.1.0")));
        firmware.release.as_mut().unwrap().manifest.kind = "firmware".into();
        let mut body = ContactBody {
            target_digest: "12".repeat(32),
            device_id: Some(17),
            state_digest: Some("34".repeat(32)),
            apps: vec![
                instruction("eu.ccv.salespoint", Some(offer(1, "4.2.0"))),
                instruction("com.old", None),
            ],
            firmware: Some(firmware),
            parameters: vec![ParameterUpdate {
                app_id: "eu.ccv.salespoint".into(),
                version: "v3".into(),
                full: false,
                changed: [
                    ("tip".to_owned(), json!({"enabled": true})),
                    ("currency".to_owned(), json!("EUR")),
                ]
                .into(),
                removed: vec!["old".into()],
            }],
            acquirer_sessions: vec!["worldline".into()],
            commands: vec![tms_packages::wire::commands::CommandInstruction {
                id: 9,
                kind: "lock".into(),
                message: Some("Fermé".into()),
                log: None,
                expires_at: 1_800_000_000,
            }],
        };
        let before = body.clone();
        assert_eq!(writer.canonical(&mut body).unwrap(), expected(&before));
        assert_eq!(body, before, "the body is given back whole");
        // Again, from the offers kept.
        assert_eq!(writer.canonical(&mut body).unwrap(), expected(&before));
        let mut bare = ContactBody { target_digest: "56".repeat(32), ..ContactBody::default() };
        assert_eq!(writer.canonical(&mut bare).unwrap(), expected(&bare));
    }

    #[test]
    fn an_offer_that_changed_is_converted_again() {
        let writer = BodyWriter::default();
        let mut body = ContactBody {
            target_digest: "12".repeat(32),
            apps: vec![instruction("eu.ccv.salespoint", Some(offer(1, "4.2.0")))],
            ..ContactBody::default()
        };
        writer.canonical(&mut body).unwrap();
        body.apps[0].release.as_mut().unwrap().download_path = "/elsewhere".into();
        assert_eq!(writer.canonical(&mut body).unwrap(), expected(&body));
    }
}
