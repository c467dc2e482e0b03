//! Step 3, count: the host decides the encoding (GSM-7 or UCS-2) and counts segments exactly,
//! per 3GPP TS 23.038 / 23.040 (see [`crate::segments`]); a provider's later count never
//! replaces it.
//!
//! A body must show something: at least one visible character. Whitespace, control characters
//! and the invisible format characters (zero-width spaces and joiners, direction marks,
//! variation selectors, the byte-order mark, soft hyphens, blank fillers, tag characters) do
//! not count, so `"\u{200b}\u{200d}"` or `"\u{7}"` is an empty message, not a blank SMS.

use super::error::{ErrorCode, PipelineError, Result};
use crate::segments::{self, SegmentCount};

/// The longest body accepted, in characters.
pub const MAX_BODY_CHARS: usize = crate::domain::MAX_BODY_CHARS;

/// A body ready to store: the text as it will be sent (after smart encoding, if on) and its
/// encoding and segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// The text to send.
    pub text: String,
    /// Its encoding, segments and units.
    pub count: SegmentCount,
}

/// Checks that `body` has a visible character and is not too long, and counts it.
pub fn count(body: &str, smart_encoding: bool) -> Result<Counted> {
    if !body.chars().any(is_visible) {
        return Err(PipelineError::new(
            ErrorCode::EmptyMessage,
            "the message body is empty: it has no visible character",
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

/// Whether `c` shows on a handset: not whitespace, not a control character, not one of the
/// format or filler characters that render as nothing.
#[must_use]
pub fn is_visible(c: char) -> bool {
    !(c.is_whitespace() || c.is_control() || is_invisible(c))
}

/// Characters that render as nothing (Unicode format characters, variation selectors, fillers).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                      // soft hyphen
            | '\u{034F}'                // combining grapheme joiner
            | '\u{061C}'                // Arabic letter mark
            | '\u{115F}' | '\u{1160}'    // Hangul choseong / jungseong fillers
            | '\u{17B4}' | '\u{17B5}'    // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}'   // Mongolian variation selectors and vowel separator
            | '\u{200B}'..='\u{200F}'   // zero-width space, non-joiner, joiner; direction marks
            | '\u{202A}'..='\u{202E}'   // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{206F}'   // word joiner, invisible operators, bidi isolates
            | '\u{2800}'                // braille pattern blank
            | '\u{3164}'                // Hangul filler
            | '\u{FE00}'..='\u{FE0F}'   // variation selectors
            | '\u{FEFF}'                // zero-width no-break space (byte-order mark)
            | '\u{FFA0}'                // halfwidth Hangul filler
            | '\u{1D173}'..='\u{1D17A}' // musical formatting controls
            | '\u{E0000}'..='\u{E007F}' // tag characters
            | '\u{E0100}'..='\u{E01EF}' // variation selectors supplement
    )
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

    /// A body of only invisible characters is empty; one visible character among them is a
    /// message, and the invisible ones are kept as sent.
    #[test]
    fn needs_a_visible_character() {
        for invisible in [
            "\u{200b}\u{200d}",
            "\u{7}",
            "\u{0}",
            "\u{feff}\u{2060}",
            "\u{fe0f}",
            "\u{00ad}\u{3164}",
            "\u{e0041}",
            "\t\r\n\u{85}",
        ] {
            assert_eq!(
                count(invisible, false).unwrap_err().code,
                ErrorCode::EmptyMessage,
                "{invisible:?}"
            );
        }
        for visible in ["\u{200b}a", ".", "😀", "\u{7}!", "♥\u{fe0f}"] {
            assert_eq!(count(visible, false).unwrap().text, visible);
        }
    }
}
