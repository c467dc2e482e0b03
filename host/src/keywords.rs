//! Opt-out, opt-in and help keywords in inbound messages.
//!
//! A keyword counts only when it is the whole message: surrounding whitespace is ignored and case
//! is folded, nothing else. "STOP" opts out; "please stop by at 5" does nothing. The lists are
//! Twilio's defaults for long codes and toll-free numbers (see `reference/sms-protocols.md` §2.7),
//! which also cover the words the FCC's 2024 consent-revocation order names.

pub use crate::store::Keyword;

const STOP: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
const START: &[&str] = &["START", "YES", "UNSTOP"];
const HELP: &[&str] = &["HELP", "INFO"];

/// The keyword `body` is, if it is exactly one.
pub fn classify(body: &str) -> Option<Keyword> {
    let word = body.trim().to_uppercase();
    if STOP.contains(&word.as_str()) {
        Some(Keyword::Stop)
    } else if START.contains(&word.as_str()) {
        Some(Keyword::Start)
    } else if HELP.contains(&word.as_str()) {
        Some(Keyword::Help)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole-message keywords match whatever their case and surrounding whitespace.
    #[test]
    fn exact_keywords_match() {
        assert_eq!(classify("STOP"), Some(Keyword::Stop));
        assert_eq!(classify("  stop\n"), Some(Keyword::Stop));
        assert_eq!(classify("Unsubscribe"), Some(Keyword::Stop));
        assert_eq!(classify("optout"), Some(Keyword::Stop));
        assert_eq!(classify("start"), Some(Keyword::Start));
        assert_eq!(classify("UNSTOP"), Some(Keyword::Start));
        assert_eq!(classify("yes"), Some(Keyword::Start));
        assert_eq!(classify("Help"), Some(Keyword::Help));
        assert_eq!(classify("info"), Some(Keyword::Help));
    }

    /// A keyword inside a longer message, or with punctuation, is not a keyword.
    #[test]
    fn substrings_do_not_match() {
        for body in [
            "please stop by at 5",
            "STOP PLEASE",
            "stop.",
            "nonstop",
            "",
            "   ",
            "s t o p",
            "helpful",
        ] {
            assert_eq!(classify(body), None, "{body:?}");
        }
    }
}
