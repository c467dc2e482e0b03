//! Senders: who a message says it is from, when the caller names one instead of the provider's
//! default.
//!
//! Three kinds exist, and Herald accepts exactly these:
//! - an E.164 number that [`PhoneNumber`] accepts (`+14155552671`);
//! - a short code: 5 or 6 digits, no `+` — the lengths the US and Canada issue, and what Twilio
//!   sends from there;
//! - an alphanumeric sender ID: 1 to 11 characters of ASCII letters, digits and spaces with at
//!   least one letter, neither starting nor ending with a space (the GSM 03.38 alphanumeric
//!   originator address holds 11 characters; carriers and Twilio take only this alphabet).
//!
//! Anything else — a number without its `+`, punctuation, a 12-character name, a 4-digit
//! code — is refused rather than handed to a provider that would refuse it later.

use serde::{Deserialize, Serialize};

use super::phone::{PhoneNumber, PhoneNumberError};

/// The fewest digits of a short code.
const SHORT_CODE_MIN: usize = 5;
/// The most digits of a short code.
const SHORT_CODE_MAX: usize = 6;
/// The longest alphanumeric sender ID.
const ALPHANUMERIC_MAX: usize = 11;

/// A validated sender: a phone number, a short code or an alphanumeric sender ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Sender {
    /// An E.164 number.
    Number(PhoneNumber),
    /// A 5- or 6-digit short code.
    ShortCode(String),
    /// An alphanumeric sender ID (1–11 letters, digits and spaces, at least one letter).
    Alphanumeric(String),
}

/// Why a sender was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderError {
    /// It starts with `+` but is not a valid E.164 number.
    #[error("{0}")]
    Number(PhoneNumberError),
    /// Only digits, but not as many as a short code has.
    #[error(
        "`{0}` is neither a short code (5 or 6 digits) nor an E.164 number (which starts with +)"
    )]
    ShortCode(String),
    /// Not a valid alphanumeric sender ID.
    #[error(
        "`{0}` is not a valid sender: use an E.164 number, a 5- or 6-digit short code, or an alphanumeric sender ID of 1 to 11 letters, digits and spaces with at least one letter"
    )]
    Alphanumeric(String),
}

impl Sender {
    /// Parses a sender, deciding its kind by its shape: a leading `+` is a number, only digits
    /// a short code, anything else an alphanumeric sender ID.
    pub fn parse(sender: &str) -> Result<Self, SenderError> {
        // Errors quote at most a short prefix: the input is untrusted and may be huge.
        let shown = || sender.chars().take(32).collect::<String>();
        if sender.starts_with('+') {
            return PhoneNumber::parse(sender)
                .map(Self::Number)
                .map_err(SenderError::Number);
        }
        if !sender.is_empty() && sender.bytes().all(|b| b.is_ascii_digit()) {
            return if (SHORT_CODE_MIN..=SHORT_CODE_MAX).contains(&sender.len()) {
                Ok(Self::ShortCode(sender.to_owned()))
            } else {
                Err(SenderError::ShortCode(shown()))
            };
        }
        let alphabet = sender
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b' ');
        let has_letter = sender.bytes().any(|b| b.is_ascii_alphabetic());
        let trimmed = !sender.starts_with(' ') && !sender.ends_with(' ');
        if alphabet && has_letter && trimmed && sender.len() <= ALPHANUMERIC_MAX {
            Ok(Self::Alphanumeric(sender.to_owned()))
        } else {
            Err(SenderError::Alphanumeric(shown()))
        }
    }

    /// The sender as the provider is given it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Number(number) => number.as_str(),
            Self::ShortCode(code) | Self::Alphanumeric(code) => code,
        }
    }
}

impl std::str::FromStr for Sender {
    type Err = SenderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Sender {
    type Error = SenderError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Sender> for String {
    fn from(sender: Sender) -> Self {
        match sender {
            Sender::Number(number) => number.into(),
            Sender::ShortCode(code) | Sender::Alphanumeric(code) => code,
        }
    }
}

impl std::fmt::Display for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind is recognised by its shape and keeps its text.
    #[test]
    fn kinds_by_shape() {
        assert!(matches!(
            Sender::parse("+14155552671"),
            Ok(Sender::Number(ref n)) if n.as_str() == "+14155552671"
        ));
        for code in ["12345", "987654"] {
            assert_eq!(Sender::parse(code), Ok(Sender::ShortCode(code.into())));
        }
        for name in [
            "Herald",
            "A",
            "ACME Shop",
            "Shop24",
            "ABCDEFGHIJK",
            "24 7 Pizza",
        ] {
            assert_eq!(Sender::parse(name), Ok(Sender::Alphanumeric(name.into())));
            assert_eq!(Sender::parse(name).unwrap().to_string(), name);
        }
    }

    /// Shapes of none of the three kinds are refused with the kind they resemble.
    #[test]
    fn other_shapes_are_refused() {
        assert!(matches!(Sender::parse("+12"), Err(SenderError::Number(_))));
        for digits in ["", "1234", "1234567", "14155552671"] {
            let refused = Sender::parse(digits).unwrap_err();
            let expected_kind = if digits.is_empty() {
                matches!(refused, SenderError::Alphanumeric(_))
            } else {
                matches!(refused, SenderError::ShortCode(_))
            };
            assert!(expected_kind, "{digits:?}: {refused:?}");
        }
        for bad in [
            "ABCDEFGHIJKL",
            "Shop-24",
            "Café",
            " Herald",
            "Herald ",
            "   ",
            "Herald\0",
            "line\nbreak",
            "12 34",
        ] {
            assert!(
                matches!(Sender::parse(bad), Err(SenderError::Alphanumeric(_))),
                "{bad:?}"
            );
        }
    }

    /// A sender round-trips through serde as its text and refuses bad text there too.
    #[test]
    fn serde_as_text() {
        let sender: Sender = serde_json::from_str("\"ACME\"").unwrap();
        assert_eq!(serde_json::to_string(&sender).unwrap(), "\"ACME\"");
        assert!(serde_json::from_str::<Sender>("\"ACME-1\"").is_err());
    }
}
