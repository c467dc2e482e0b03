//! Step 3, count: the host decides the encoding (GSM-7 or UCS-2) and counts segments exactly,
//! per 3GPP TS 23.038 / 23.040 (see [`crate::segments`]); a provider's later count never
//! replaces it.

use super::error::{ErrorCode, PipelineError, Result};
use crate::segments::{self, SegmentCount};

/// The longest body accepted, in characters (Twilio's and SNS's limit).
pub const MAX_BODY_CHARS: usize = 1600;

/// A body ready to store: the text as it will be sent (after smart encoding, if on) and its
/// encoding and segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// The text to send.
    pub text: String,
    /// Its encoding, segments and units.
    pub count: SegmentCount,
}

/// Checks `body`'s length and counts it.
pub fn count(body: &str, smart_encoding: bool) -> Result<Counted> {
    if body.trim().is_empty() {
        return Err(PipelineError::new(
            ErrorCode::EmptyMessage,
            "the message body is empty",
        ));
    }
    let chars = body.chars().count();
    if chars > MAX_BODY_CHARS {
        return Err(PipelineError::new(
            ErrorCode::MessageTooLong,
            format!("the message has {chars} characters; at most {MAX_BODY_CHARS} are allowed"),
        ));
    }
    let (text, count) = segments::encode_for_send(body, segments::Options { smart_encoding })
        .map_err(|e| PipelineError::new(ErrorCode::EmptyMessage, e.to_string()))?;
    Ok(Counted {
        text: text.into_owned(),
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::Encoding;

    /// Empty and overlong bodies are refused; others are counted.
    #[test]
    fn counts_or_refuses() {
        assert_eq!(
            count("  \n", false).unwrap_err().code,
            ErrorCode::EmptyMessage
        );
        let long = "a".repeat(MAX_BODY_CHARS + 1);
        assert_eq!(
            count(&long, false).unwrap_err().code,
            ErrorCode::MessageTooLong
        );
        let counted = count("Hello 😀", false).unwrap();
        assert_eq!(counted.count.encoding, Encoding::Ucs2);
        assert_eq!(counted.count.segments, 1);
        let smart = count("“quoted”", true).unwrap();
        assert_eq!(smart.text, "\"quoted\"");
        assert_eq!(smart.count.encoding, Encoding::Gsm7);
    }
}
