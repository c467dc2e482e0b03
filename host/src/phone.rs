//! Phone numbers in E.164: `+`, a country code starting 1–9, at most 15 digits in all.

/// Whether `number` is syntactically E.164 (`^\+[1-9]\d{1,14}$`).
///
/// This is a syntax check, as Twilio and SNS require; it does not prove the number exists.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid numbers pass; missing plus, letters, spaces, leading zero and overlength fail.
    #[test]
    fn e164_syntax() {
        for ok in ["+14155552671", "+442071838750", "+12", "+123456789012345"] {
            assert!(is_e164(ok), "{ok}");
        }
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
            assert!(!is_e164(bad), "{bad}");
        }
    }
}
