//! Remote commands to terminals, pure: what may be asked, how a command's
//! state moves, and who may ask. The server queues them, delivers them in
//! the signed contact answer and records what the terminal reports.

use std::fmt;
use std::str::FromStr;

/// The longest text a `message` or `lock` shows on the terminal's screen.
pub const MAX_MESSAGE_CHARS: usize = 200;
/// The size cap of a log upload when the request names none.
pub const DEFAULT_LOG_BYTES: u64 = 10 << 20;
/// The largest size cap a log request may name.
pub const MAX_LOG_BYTES: u64 = 100 << 20;
/// How long a command waits for its terminal when the request names no
/// expiry, and the longest it may wait.
pub const DEFAULT_EXPIRY_SECS: u64 = 24 * 3_600;
pub const MAX_EXPIRY_SECS: u64 = 30 * 24 * 3_600;

/// What a terminal is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandKind {
    /// Refuse payments and show a message until unlocked.
    Lock,
    Unlock,
    Restart,
    /// Show a text to whoever uses the terminal.
    Message,
    /// Upload a log to the server.
    CollectLogs,
    /// Report the full state at the next contact.
    RefreshInventory,
}

impl CommandKind {
    pub const ALL: [CommandKind; 6] = [
        CommandKind::Lock,
        CommandKind::Unlock,
        CommandKind::Restart,
        CommandKind::Message,
        CommandKind::CollectLogs,
        CommandKind::RefreshInventory,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Lock => "lock",
            CommandKind::Unlock => "unlock",
            CommandKind::Restart => "restart",
            CommandKind::Message => "message",
            CommandKind::CollectLogs => "collect_logs",
            CommandKind::RefreshInventory => "refresh_inventory",
        }
    }

    /// A merchant's own staff may lock, unlock and message their terminals
    /// (a stolen terminal, a shop closed for the day); the rest is support's.
    pub fn merchant_may_issue(self) -> bool {
        matches!(self, CommandKind::Lock | CommandKind::Unlock | CommandKind::Message)
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CommandKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CommandKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!("{s:?}: a command is lock, unlock, restart, message, collect_logs or refresh_inventory")
        })
    }
}

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandState {
    /// Waiting for the terminal's next contact.
    Queued,
    /// In an answer the terminal was given; sent again until it reports.
    Delivered,
    Succeeded,
    Failed,
    /// Its terminal did not report before it expired.
    Expired,
    Cancelled,
}

impl CommandState {
    pub const ALL: [CommandState; 6] = [
        CommandState::Queued,
        CommandState::Delivered,
        CommandState::Succeeded,
        CommandState::Failed,
        CommandState::Expired,
        CommandState::Cancelled,
    ];
    /// The states in which a terminal still gets the command.
    pub const OPEN: [CommandState; 2] = [CommandState::Queued, CommandState::Delivered];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Queued => "queued",
            CommandState::Delivered => "delivered",
            CommandState::Succeeded => "succeeded",
            CommandState::Failed => "failed",
            CommandState::Expired => "expired",
            CommandState::Cancelled => "cancelled",
        }
    }

    pub fn is_open(self) -> bool {
        CommandState::OPEN.contains(&self)
    }
}

impl fmt::Display for CommandState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CommandState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CommandState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a command state"))
    }
}

/// What happens to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandEvent {
    /// Put in a contact answer.
    Deliver,
    /// The terminal reports it done (or uploaded the log it asked for).
    Succeed,
    Fail,
    /// Its expiry passed.
    Expire,
    /// Support or the merchant withdrew it.
    Cancel,
}

/// The state a command moves to, or `None` when the event does not apply:
/// a finished command (succeeded, failed, expired, cancelled) never moves
/// again, so a late report cannot undo a cancellation or an expiry. A
/// terminal may report without the answer having been recorded as
/// delivered (another server process answered it).
pub fn transition(state: CommandState, event: CommandEvent) -> Option<CommandState> {
    use CommandEvent as E;
    use CommandState as S;
    match (state, event) {
        (S::Queued, E::Deliver) => Some(S::Delivered),
        (S::Delivered, E::Deliver) => Some(S::Delivered),
        (S::Queued | S::Delivered, E::Succeed) => Some(S::Succeeded),
        (S::Queued | S::Delivered, E::Fail) => Some(S::Failed),
        (S::Queued | S::Delivered, E::Expire) => Some(S::Expired),
        (S::Queued | S::Delivered, E::Cancel) => Some(S::Cancelled),
        _ => None,
    }
}

/// A log a `collect_logs` command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSpec {
    /// Which log: a short name the payment app knows (`system`, `payment`, …).
    pub name: String,
    /// Unix seconds.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// The upload is refused past this many bytes (as uploaded, compressed or not).
    pub max_bytes: u64,
}

/// A command as asked, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub kind: CommandKind,
    pub message: Option<String>,
    pub log: Option<LogSpec>,
    pub expires_in_secs: u64,
}

/// Why a command request is refused: the field and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid { field, message: message.into() }
}

/// A command request before checking (times already read as Unix seconds).
#[derive(Debug, Clone, Default)]
pub struct Asked<'a> {
    pub kind: &'a str,
    pub message: Option<&'a str>,
    pub log_name: Option<&'a str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub max_bytes: Option<u64>,
    pub expires_in_secs: Option<u64>,
}

/// Checks a request: `message` and `lock` carry a text (lock's may be
/// empty: the terminal shows its own), `collect_logs` names a log, and no
/// other command carries either.
pub fn check(asked: &Asked<'_>) -> Result<CommandSpec, Invalid> {
    let kind: CommandKind = asked.kind.parse().map_err(|m: String| invalid("kind", m))?;
    let message = match (kind, asked.message.map(str::trim)) {
        (CommandKind::Message, None | Some("")) => return Err(invalid("message", "a message needs a text")),
        (CommandKind::Message | CommandKind::Lock, Some(text)) => {
            if text.chars().count() > MAX_MESSAGE_CHARS {
                return Err(invalid(
                    "message",
                    format!("at most {MAX_MESSAGE_CHARS} characters fit on a terminal's screen"),
                ));
            }
            if text.chars().any(|c| c.is_control() && c != '\n') {
                return Err(invalid("message", "a message is plain text (line breaks allowed)"));
            }
            (!text.is_empty()).then(|| text.to_owned())
        }
        (CommandKind::Lock, None) => None,
        (_, Some(_)) => return Err(invalid("message", format!("{kind} carries no message"))),
        (_, None) => None,
    };
    let wants_log = asked.log_name.is_some()
        || asked.since.is_some()
        || asked.until.is_some()
        || asked.max_bytes.is_some();
    let log = match (kind, asked.log_name.map(str::trim)) {
        (CommandKind::CollectLogs, None) => return Err(invalid("log", "name the log to collect")),
        (CommandKind::CollectLogs, Some(name)) => {
            let well_formed = !name.is_empty()
                && name.len() <= 40
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
            if !well_formed {
                return Err(invalid("log", "a log name is 1 to 40 of a-z, 0-9, '.', '_' and '-'"));
            }
            if let (Some(since), Some(until)) = (asked.since, asked.until)
                && since >= until
            {
                return Err(invalid("since", "since comes before until"));
            }
            let max_bytes = asked.max_bytes.unwrap_or(DEFAULT_LOG_BYTES);
            if max_bytes == 0 || max_bytes > MAX_LOG_BYTES {
                return Err(invalid("max_bytes", format!("from 1 byte to {} MiB", MAX_LOG_BYTES >> 20)));
            }
            Some(LogSpec { name: name.to_owned(), since: asked.since, until: asked.until, max_bytes })
        }
        (_, _) if wants_log => return Err(invalid("log", format!("{kind} collects no log"))),
        (_, _) => None,
    };
    let expires_in_secs = asked.expires_in_secs.unwrap_or(DEFAULT_EXPIRY_SECS);
    if !(60..=MAX_EXPIRY_SECS).contains(&expires_in_secs) {
        return Err(invalid(
            "expires_in_secs",
            format!("a command waits from a minute to {} days", MAX_EXPIRY_SECS / 86_400),
        ));
    }
    Ok(CommandSpec { kind, message, log, expires_in_secs })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn events() -> impl Strategy<Value = Vec<CommandEvent>> {
        prop::collection::vec(
            prop::sample::select(vec![
                CommandEvent::Deliver,
                CommandEvent::Succeed,
                CommandEvent::Fail,
                CommandEvent::Expire,
                CommandEvent::Cancel,
            ]),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn a_finished_command_never_moves_again(events in events()) {
            let mut state = CommandState::Queued;
            let mut finished: Option<CommandState> = None;
            for event in events {
                match transition(state, event) {
                    Some(next) => {
                        prop_assert!(finished.is_none(), "{state} moved to {next} after finishing");
                        state = next;
                        if !state.is_open() {
                            finished = Some(state);
                        }
                    }
                    None => prop_assert!(!state.is_open(), "an open command takes every event"),
                }
            }
            if let Some(f) = finished {
                prop_assert_eq!(state, f);
            }
        }

        #[test]
        fn messages_longer_than_a_screen_are_refused(text in "[a-zé ]{0,260}") {
            let asked = Asked { kind: "message", message: Some(&text), ..Asked::default() };
            let trimmed = text.trim();
            match check(&asked) {
                Ok(spec) => {
                    prop_assert!(!trimmed.is_empty() && trimmed.chars().count() <= MAX_MESSAGE_CHARS);
                    prop_assert_eq!(spec.message.as_deref(), Some(trimmed));
                }
                Err(e) => {
                    prop_assert_eq!(e.field, "message");
                    prop_assert!(trimmed.is_empty() || trimmed.chars().count() > MAX_MESSAGE_CHARS);
                }
            }
        }
    }

    #[test]
    fn each_command_carries_only_what_it_needs() {
        let ok = |a: Asked<'_>| check(&a).unwrap();
        let field = |a: Asked<'_>| check(&a).unwrap_err().field;
        assert_eq!(ok(Asked { kind: "lock", ..Asked::default() }).message, None);
        assert_eq!(
            ok(Asked { kind: "lock", message: Some(" Call us "), ..Asked::default() }).message.as_deref(),
            Some("Call us")
        );
        assert_eq!(field(Asked { kind: "restart", message: Some("hi"), ..Asked::default() }), "message");
        assert_eq!(field(Asked { kind: "reboot", ..Asked::default() }), "kind");
        assert_eq!(field(Asked { kind: "collect_logs", ..Asked::default() }), "log");
        assert_eq!(field(Asked { kind: "unlock", log_name: Some("system"), ..Asked::default() }), "log");
        assert_eq!(
            field(Asked { kind: "collect_logs", log_name: Some("../etc"), ..Asked::default() }),
            "log"
        );
        let log =
            ok(Asked { kind: "collect_logs", log_name: Some("payment"), ..Asked::default() }).log.unwrap();
        assert_eq!((log.name.as_str(), log.max_bytes), ("payment", DEFAULT_LOG_BYTES));
        let too_big = Asked {
            kind: "collect_logs",
            log_name: Some("a"),
            max_bytes: Some(MAX_LOG_BYTES + 1),
            ..Asked::default()
        };
        assert_eq!(field(too_big), "max_bytes");
        let backwards = Asked {
            kind: "collect_logs",
            log_name: Some("a"),
            since: Some(10),
            until: Some(5),
            ..Asked::default()
        };
        assert_eq!(field(backwards), "since");
        assert_eq!(
            field(Asked { kind: "restart", expires_in_secs: Some(1), ..Asked::default() }),
            "expires_in_secs"
        );
        assert_eq!(field(Asked { kind: "message", message: Some("a\u{7}b"), ..Asked::default() }), "message");
    }

    #[test]
    fn merchants_may_lock_unlock_and_message_only() {
        let theirs: Vec<CommandKind> =
            CommandKind::ALL.into_iter().filter(|k| k.merchant_may_issue()).collect();
        assert_eq!(theirs, [CommandKind::Lock, CommandKind::Unlock, CommandKind::Message]);
        for kind in CommandKind::ALL {
            assert_eq!(kind.as_str().parse::<CommandKind>(), Ok(kind));
        }
    }
}
