//! Devices and their transactions, as pure rules: which app runs where, what
//! a device name may be, what a transaction must never carry.

use std::fmt;
use std::str::FromStr;

use crate::accounts::UnknownName;

/// The payment app a device runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentApp {
    /// On a payment terminal, identified by its serial number.
    Salespoint,
    /// On a phone (SoftPOS), identified by the install id of the app.
    TapNGo,
}

impl PaymentApp {
    pub const ALL: [PaymentApp; 2] = [PaymentApp::Salespoint, PaymentApp::TapNGo];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentApp::Salespoint => "salespoint",
            PaymentApp::TapNGo => "tapngo",
        }
    }

    /// Whether the hardware must be a terminal of the merchant's registered estate.
    pub fn needs_registered_terminal(self) -> bool {
        matches!(self, PaymentApp::Salespoint)
    }
}

impl FromStr for PaymentApp {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaymentApp::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownName { kind: "app", name: s.to_owned() })
    }
}

impl fmt::Display for PaymentApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device name as the merchant types it on the terminal: trimmed, 1 to 50
/// characters, no control characters.
pub fn normalize_device_name(name: &str) -> Option<String> {
    let name = name.trim();
    let ok = (1..=50).contains(&name.chars().count()) && !name.chars().any(char::is_control);
    ok.then(|| name.to_owned())
}

/// Whether text holds what looks like a full card number (PAN): 13 to 19
/// digits in a row, spaces and dashes ignored. Masked data (`**** 1234`,
/// `541333******1234`) never has such a run.
pub fn contains_pan(text: &str) -> bool {
    let mut run = 0usize;
    for c in text.chars() {
        match c {
            '0'..='9' => {
                run += 1;
                if run >= 13 {
                    return true;
                }
            }
            ' ' | '-' => {}
            _ => run = 0,
        }
    }
    false
}

/// The status of a transaction as the terminal determined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    Success,
    Failure,
    Cancelled,
    Unknown,
}

impl TransactionStatus {
    pub const ALL: [TransactionStatus; 4] = [
        TransactionStatus::Success,
        TransactionStatus::Failure,
        TransactionStatus::Cancelled,
        TransactionStatus::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransactionStatus::Success => "success",
            TransactionStatus::Failure => "failure",
            TransactionStatus::Cancelled => "cancelled",
            TransactionStatus::Unknown => "unknown",
        }
    }

    /// Only a failed or unknown transaction may get a status set by hand.
    pub fn allows_manual_status(self) -> bool {
        matches!(self, TransactionStatus::Failure | TransactionStatus::Unknown)
    }

    /// What may be set by hand: success or failure.
    pub fn is_manual_choice(self) -> bool {
        matches!(self, TransactionStatus::Success | TransactionStatus::Failure)
    }
}

impl FromStr for TransactionStatus {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TransactionStatus::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownName { kind: "transaction status", name: s.to_owned() })
    }
}

pub const TRANSACTION_TYPES: [&str; 5] = ["payment", "refund", "reversal", "preauthorisation", "completion"];

/// An ISO 4217 code in its canonical form: three upper-case letters.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pans_are_spotted_and_masked_data_passes() {
        assert!(contains_pan("4111111111111111"));
        assert!(contains_pan("4111 1111 1111 1111"));
        assert!(contains_pan("card 5413-3300-8909-9999 ok"));
        assert!(contains_pan("6759649826438453"));
        assert!(!contains_pan("**** **** **** 1111"));
        assert!(!contains_pan("541333******9999"));
        assert!(!contains_pan("123456789012"), "12 digits is not a PAN");
        assert!(!contains_pan(""));
    }

    #[test]
    fn only_failed_or_unknown_transactions_take_a_manual_status() {
        assert!(TransactionStatus::Failure.allows_manual_status());
        assert!(TransactionStatus::Unknown.allows_manual_status());
        assert!(!TransactionStatus::Success.allows_manual_status());
        assert!(!TransactionStatus::Cancelled.allows_manual_status());
        assert!(!TransactionStatus::Unknown.is_manual_choice());
    }

    #[test]
    fn device_names_and_currencies() {
        assert_eq!(normalize_device_name("  Caisse 1 ").as_deref(), Some("Caisse 1"));
        assert!(normalize_device_name("").is_none());
        assert!(normalize_device_name(&"x".repeat(51)).is_none());
        assert!(normalize_device_name("a\tb").is_none());
        assert!(is_currency_code("EUR"));
        assert!(!is_currency_code("eur"));
        assert!(!is_currency_code("EURO"));
        assert_eq!("tapngo".parse::<PaymentApp>().unwrap(), PaymentApp::TapNGo);
    }
}
