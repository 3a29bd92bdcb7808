//! Webhooks, pure: the events one may subscribe to, which addresses are
//! acceptable, and when a failed delivery is tried again.

/// Every event a subscription may name.
pub const EVENTS: [&str; 6] = [
    "terminal.missing",
    "terminal.back",
    "install.failed",
    "rollout.paused",
    "command.failed",
    "transaction.manual_status",
];

/// Events about one merchant's terminals, which its own subscriptions get;
/// the others (rollouts) are the operator's alone.
pub fn is_merchant_event(event: &str) -> bool {
    event != "rollout.paused"
}

/// Checks a subscription's events: known, at least one, no repeats; `*`
/// stands for every event the subscriber may have.
pub fn check_events(events: &[String], merchant: bool) -> Result<Vec<String>, String> {
    let available: Vec<&str> = EVENTS.iter().copied().filter(|e| !merchant || is_merchant_event(e)).collect();
    if events.iter().any(|e| e == "*") {
        return Ok(available.iter().map(|e| (*e).to_owned()).collect());
    }
    if events.is_empty() {
        return Err("name at least one event (or *)".into());
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        if !available.contains(&e.as_str()) {
            return Err(format!("{e:?}: the events are {}", available.join(", ")));
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

/// Checks a receiver's URL: HTTPS, or plain HTTP to this machine only
/// (`localhost`, `127.0.0.1`, `[::1]`) for a receiver beside the server.
/// No user name or password in it (they would be logged and shown).
pub fn check_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put no credentials in the URL: verify the signature instead".into());
    }
    let loopback = matches!(
        url.host(),
        Some(url::Host::Domain("localhost"))
            | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
            | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
    );
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("deliveries go over HTTPS (plain HTTP only to this machine)".into()),
        _ => Err(format!("{text:?}: an https:// URL")),
    }
}

/// Seconds before attempt `attempts + 1` after `attempts` failed ones:
/// 30 s doubling up to an hour. Deliveries stop a day after the event.
pub fn retry_delay_secs(attempts: u32) -> i64 {
    30i64.saturating_mul(1i64 << attempts.saturating_sub(1).min(20)).min(3_600)
}

/// How long a delivery is tried, from its event.
pub const RETRY_FOR_SECS: i64 = 24 * 3_600;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn events_are_checked_and_star_means_every_one_the_subscriber_may_have() {
        assert_eq!(check_events(&["*".into()], false).unwrap().len(), EVENTS.len());
        assert!(!check_events(&["*".into()], true).unwrap().contains(&"rollout.paused".to_owned()));
        assert!(check_events(&["rollout.paused".into()], true).is_err(), "the operator's alone");
        assert!(check_events(&[], false).is_err());
        assert!(check_events(&["terminal.lost".into()], false).is_err());
        assert_eq!(
            check_events(&["command.failed".into(), "command.failed".into()], false).unwrap(),
            ["command.failed"]
        );
    }

    #[test]
    fn receivers_are_https_or_on_this_machine() {
        assert!(check_url("https://hooks.shop.example/tms").is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        assert!(check_url("http://[::1]:9/hook").is_ok());
        assert!(check_url("http://hooks.shop.example/tms").is_err());
        assert!(check_url("https://user:pw@hooks.shop.example/").is_err());
        assert!(check_url("ftp://hooks.shop.example/").is_err());
        assert!(check_url("not a url").is_err());
    }

    proptest! {
        #[test]
        fn retries_grow_and_stay_within_an_hour(attempts in 1u32..200) {
            let delay = retry_delay_secs(attempts);
            prop_assert!((30..=3_600).contains(&delay));
            prop_assert!(retry_delay_secs(attempts + 1) >= delay);
        }
    }
}
