//! Phone numbers: E.164 text that Google's libphonenumber metadata (through the `phonenumber`
//! crate) accepts as a real number, with the country it belongs to.
//!
//! The syntax check comes first and is strict (`+`, a country code starting 1–9, at most 15
//! digits, nothing else), because E.164 is what Twilio and SNS take; libphonenumber then refuses
//! numbers no country can have, such as `+12` or `+1 555 …` (no such area code). A number that
//! passes may still not exist: only the carrier can tell that.

use serde::{Deserialize, Serialize};

/// A validated E.164 phone number with its ISO 3166 country.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber {
    e164: String,
    country: Option<String>,
}

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberError {
    /// Not E.164 text.
    #[error("`{0}` is not an E.164 number such as +14155552671")]
    Syntax(String),
    /// E.164 text, but no country has such a number.
    #[error("`{0}` is not a valid phone number in any country")]
    Invalid(String),
}

/// Whether `number` is E.164 text (`^\+[1-9]\d{1,14}$`).
fn is_e164_syntax(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

impl PhoneNumber {
    /// Parses and validates an E.164 number.
    pub fn parse(number: &str) -> Result<Self, PhoneNumberError> {
        // Errors quote at most a short prefix: the input is untrusted and may be huge.
        let shown = || number.chars().take(32).collect::<String>();
        if !is_e164_syntax(number) {
            return Err(PhoneNumberError::Syntax(shown()));
        }
        let parsed =
            phonenumber::parse(None, number).map_err(|_| PhoneNumberError::Invalid(shown()))?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneNumberError::Invalid(shown()));
        }
        let country = parsed.country().id().map(|id| id.as_ref().to_owned());
        Ok(Self {
            e164: number.to_owned(),
            country,
        })
    }

    /// The number in E.164 form, e.g. `+14155552671`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The ISO 3166-1 alpha-2 code of the number's country (`US`, `GB`), when the metadata
    /// names a single one (non-geographic numbers have none).
    #[must_use]
    pub fn country(&self) -> Option<&str> {
        self.country.as_deref()
    }
}

impl std::str::FromStr for PhoneNumber {
    type Err = PhoneNumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneNumberError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PhoneNumber> for String {
    fn from(number: PhoneNumber) -> Self {
        number.e164
    }
}

impl std::fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.e164)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real numbers parse with their country.
    #[test]
    fn valid_numbers_know_their_country() {
        let us = PhoneNumber::parse("+14155552671").unwrap();
        assert_eq!(us.as_str(), "+14155552671");
        assert_eq!(us.country(), Some("US"));
        let gb = PhoneNumber::parse("+442071838750").unwrap();
        assert_eq!(gb.country(), Some("GB"));
        // Twilio's magic test numbers are real NANP numbers too.
        assert!(PhoneNumber::parse("+15005550006").is_ok());
    }

    /// Text that is not E.164 is a syntax error.
    #[test]
    fn syntax_errors() {
        for bad in [
            "14155552671",
            "+1 415 555 2671",
            "+1-415",
            "+0123",
            "+1234567890123456",
            "+",
            "",
            "+1a",
            "++1",
        ] {
            assert!(
                matches!(PhoneNumber::parse(bad), Err(PhoneNumberError::Syntax(_))),
                "{bad}"
            );
        }
    }

    /// E.164 text that no country can have is refused.
    #[test]
    fn impossible_numbers_are_refused() {
        for bad in ["+12", "+123456789012345", "+15551234567", "+999123"] {
            assert!(
                matches!(PhoneNumber::parse(bad), Err(PhoneNumberError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
