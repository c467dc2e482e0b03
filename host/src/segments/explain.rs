//! Why a text costs what it costs: [`explain`] counts it, points at every character that forces
//! UCS-2 (with its position), and says what Smart Encoding would replace and what that would
//! count. The dry run (`POST /estimate`), template previews and `herald segments --explain` all
//! print this one [`Explanation`].
//!
//! Positions are 0-based indexes of Unicode scalar values (Rust `char`s, JavaScript code points),
//! not bytes and not UTF-16 units, so an emoji before a character moves it by one.

use serde::Serialize;

use super::{Options, SegmentCount, SegmentError, encode_for_send, gsm, smart};

/// A text's count, the characters that force UCS-2, and the Smart Encoding alternative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The text as written, counted without Smart Encoding.
    #[serde(flatten)]
    pub count: SegmentCount,
    /// Every occurrence of a character outside the GSM-7 alphabet, in order (empty for GSM-7).
    pub ucs2_characters: Vec<CharAt>,
    /// What Smart Encoding would do; `None` when it would change nothing.
    pub smart_encoding: Option<SmartAlternative>,
}

/// One character at its position in the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CharAt {
    /// The character.
    pub character: char,
    /// Its code point, as `U+2019`.
    pub code_point: String,
    /// Its 0-based index among the text's characters.
    pub position: usize,
}

impl CharAt {
    fn new(position: usize, character: char) -> Self {
        Self {
            character,
            code_point: format!("U+{:04X}", u32::from(character)),
            position,
        }
    }
}

/// One character Smart Encoding replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replacement {
    /// The character replaced, and where.
    #[serde(flatten)]
    pub at: CharAt,
    /// The GSM text put in its place (empty: the character is dropped).
    pub replacement: &'static str,
}

/// The text as Smart Encoding would send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmartAlternative {
    /// Every replacement the table makes, in order.
    pub replacements: Vec<Replacement>,
    /// Whether the replacements make the whole text GSM-7, and so are sent. When a character
    /// has no GSM stand-in the message goes out as UCS-2 anyway, with the original text.
    pub applies: bool,
    /// The text that would be sent with Smart Encoding on.
    pub text: String,
    /// Its count.
    #[serde(flatten)]
    pub count: SegmentCount,
}

/// Explains how `text` is counted; see the module documentation.
///
/// # Errors
///
/// [`SegmentError::Empty`] if `text` is empty.
pub fn explain(text: &str) -> Result<Explanation, SegmentError> {
    let (_, count) = encode_for_send(text, Options::default())?;
    let ucs2_characters = text
        .chars()
        .enumerate()
        .filter(|&(_, c)| gsm::cost(c) == 0)
        .map(|(position, c)| CharAt::new(position, c))
        .collect();
    let replacements: Vec<Replacement> = text
        .chars()
        .enumerate()
        .filter_map(|(position, c)| {
            smart::replacement(c).map(|replacement| Replacement {
                at: CharAt::new(position, c),
                replacement,
            })
        })
        .collect();
    let smart_encoding = if replacements.is_empty() {
        None
    } else {
        // A text that Smart Encoding empties cannot be sent that way; the alternative is then
        // the text as written.
        let (sent, smart_count) = encode_for_send(
            text,
            Options {
                smart_encoding: true,
            },
        )
        .map(|(sent, counted)| (sent.into_owned(), counted))
        .unwrap_or_else(|_| (text.to_owned(), count.clone()));
        Some(SmartAlternative {
            replacements,
            applies: sent != text,
            text: sent,
            count: smart_count,
        })
    };
    Ok(Explanation {
        count,
        ucs2_characters,
        smart_encoding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::Encoding;

    /// A GSM text has nothing to explain beyond its count.
    #[test]
    fn gsm_text_has_no_ucs2_characters() {
        let explained = explain("Your table is ready").unwrap();
        assert_eq!(explained.count.encoding, Encoding::Gsm7);
        assert!(explained.ucs2_characters.is_empty());
        assert_eq!(explained.smart_encoding, None);
    }

    /// Curly quotes force UCS-2 at their positions; Smart Encoding replaces them and the text
    /// goes back to GSM-7.
    #[test]
    fn smart_quotes_are_pointed_at_and_replaced() {
        let explained = explain("It\u{2019}s \u{201C}ready\u{201D}").unwrap();
        assert_eq!(explained.count.encoding, Encoding::Ucs2);
        let positions: Vec<(usize, &str)> = explained
            .ucs2_characters
            .iter()
            .map(|c| (c.position, c.code_point.as_str()))
            .collect();
        assert_eq!(positions, [(2, "U+2019"), (5, "U+201C"), (11, "U+201D")]);
        let smart = explained.smart_encoding.unwrap();
        assert!(smart.applies);
        assert_eq!(smart.text, "It's \"ready\"");
        assert_eq!(smart.count.encoding, Encoding::Gsm7);
        assert_eq!(smart.replacements.len(), 3);
        assert_eq!(smart.replacements[0].replacement, "'");
    }

    /// With a character that has no GSM stand-in, the replacements are listed but not applied:
    /// the original text is what goes out, as UCS-2.
    #[test]
    fn an_emoji_keeps_the_original_text() {
        let explained = explain("Deal\u{2019}s on \u{1F355}").unwrap();
        let positions: Vec<usize> = explained
            .ucs2_characters
            .iter()
            .map(|c| c.position)
            .collect();
        assert_eq!(positions, [4, 10]);
        let smart = explained.smart_encoding.unwrap();
        assert!(!smart.applies);
        assert_eq!(smart.text, "Deal\u{2019}s on \u{1F355}");
        assert_eq!(smart.count.encoding, Encoding::Ucs2);
    }
}
