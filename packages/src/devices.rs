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

/// Whether two device names are the same name to a merchant: compared
/// without surrounding spaces and without case ("Caisse 1" and "caisse 1 ").
pub fn same_device_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

/// Whether text holds what looks like a full card number (PAN): a run of 13
/// to 19 digits (any of the common decimal digit forms; separators such as
/// spaces, dashes, dots, slashes and invisible characters ignored) that passes
/// the Luhn check. Masked data (`**** 1234`, `541333******1234`) has no such run.
pub fn contains_pan(text: &str) -> bool {
    let is_pan = |run: &[u8]| (13..=19).contains(&run.len()) && luhn_valid(run);
    let mut run: Vec<u8> = Vec::new();
    for c in text.chars() {
        if let Some(d) = decimal_digit(c) {
            run.push(d);
        } else if !is_separator(c) {
            if is_pan(&run) {
                return true;
            }
            run.clear();
        }
    }
    is_pan(&run)
}

/// Masked card data shows at most the first six and the last four digits of
/// the card number in clear (or only the last four, without a mask).
pub fn is_masked_card(text: &str) -> bool {
    let digits = |s: &str| s.chars().filter(|c| decimal_digit(*c).is_some()).count();
    let is_mask = |c: char| matches!(c, '*' | 'X' | 'x' | '#' | '\u{2022}');
    if contains_pan(text) {
        return false;
    }
    match (text.find(is_mask), text.rfind(is_mask)) {
        (Some(first), Some(last)) => {
            digits(&text[..first]) <= 6 && digits(&text[first..last]) == 0 && digits(&text[last..]) <= 4
        }
        _ => digits(text) <= 4,
    }
}

fn decimal_digit(c: char) -> Option<u8> {
    if c.is_ascii_digit() {
        return Some(c as u8 - b'0');
    }
    // Full-width and other scripts' digits read the same to a human.
    match c as u32 {
        0xFF10..=0xFF19 => Some((c as u32 - 0xFF10) as u8),
        0x0660..=0x0669 => Some((c as u32 - 0x0660) as u8),
        0x06F0..=0x06F9 => Some((c as u32 - 0x06F0) as u8),
        0x0966..=0x096F => Some((c as u32 - 0x0966) as u8),
        _ => None,
    }
}

fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '.'
                | '/'
                | '_'
                | '\u{200B}'
                | '\u{200C}'
                | '\u{200D}'
                | '\u{2060}'
                | '\u{FEFF}'
                | '\u{2010}'..='\u{2015}'
        )
}

fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(*d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
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
    fn device_names_compare_without_case_and_surrounding_spaces() {
        assert!(same_device_name("Caisse 1", "caisse 1 "));
        assert!(same_device_name("ÉPICERIE", " épicerie"));
        assert!(!same_device_name("Caisse 1", "Caisse 2"));
        assert!(!same_device_name("Caisse 1", "Caisse  1"));
    }

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
        assert!(contains_pan("4111.1111.1111.1111"));
        assert!(contains_pan("4111/1111/1111/1111"));
        assert!(contains_pan("4111\u{200B}1111\u{00A0}1111 1111"));
        assert!(contains_pan("\u{FF14}\u{FF11}\u{FF11}\u{FF11}111111111111"));
        // Long numeric ids that are not card numbers pass.
        assert!(!contains_pan("1764241234567"), "epoch milliseconds fail the Luhn check");
        assert!(!contains_pan("20261127123456789"));
    }

    #[test]
    fn masked_cards_show_at_most_six_and_four_digits() {
        assert!(is_masked_card("**** **** **** 4242"));
        assert!(is_masked_card("541333******9999"));
        assert!(!is_masked_card("5413330089******"), "too many digits in clear");
        assert!(!is_masked_card("4111 1111 1111 1111"));
        assert!(is_masked_card("541333••••••9999"));
        assert!(!is_masked_card("541333••12••9999"));
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
