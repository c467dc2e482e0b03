//! Why a body is encoded and counted as it is: which characters force UCS-2, where they are,
//! and what Smart Encoding would replace and what that would cost. Used by template previews
//! (and meant for dry runs); a send itself only needs [`super::encode_for_send`].
//!
//! Positions are indexes of Unicode scalar values (Rust `char`s) from 0, the unit a caller can
//! use to find the character in the text it sent.

use serde::Serialize;

use super::{Options, SegmentCount, count, gsm, smart};

/// A character at a position of the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CharAt {
    /// The index of the character, from 0, in characters.
    pub position: usize,
    /// The character.
    pub character: char,
}

/// One replacement Smart Encoding would make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replacement {
    /// The index of the replaced character, from 0, in characters of the original text.
    pub position: usize,
    /// The character replaced.
    pub character: char,
    /// What replaces it (GSM characters; empty when it is dropped).
    pub replacement: &'static str,
}

/// What Smart Encoding would do to a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmartAlternative {
    /// The replacements of its table, in text order.
    pub replacements: Vec<Replacement>,
    /// Whether they would be applied: only when the replaced text is entirely GSM (otherwise
    /// the message goes out as UCS-2 anyway, untouched; see [`super`]).
    pub applied: bool,
    /// The count of what would be sent with Smart Encoding on; `None` when nothing would be
    /// left to send.
    pub count: Option<SegmentCount>,
}

/// How a text is encoded and counted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The count of the text as it is; `None` for an empty text.
    pub count: Option<SegmentCount>,
    /// Every character outside the GSM alphabet, with its position: the ones that force UCS-2.
    pub ucs2_characters: Vec<CharAt>,
    /// What Smart Encoding would change; `None` when its table changes nothing.
    pub smart_encoding: Option<SmartAlternative>,
}

/// Explains how `text` is encoded and counted (see [`Explanation`]).
#[must_use]
pub fn explain(text: &str) -> Explanation {
    let mut ucs2_characters = Vec::new();
    let mut replacements = Vec::new();
    for (position, character) in text.chars().enumerate() {
        if gsm::is_gsm(character) {
            continue;
        }
        ucs2_characters.push(CharAt {
            position,
            character,
        });
        if let Some(replacement) = smart::replacement(character) {
            replacements.push(Replacement {
                position,
                character,
                replacement,
            });
        }
    }
    let smart_encoding = (!replacements.is_empty()).then(|| {
        let smart = count(
            text,
            Options {
                smart_encoding: true,
            },
        )
        .ok();
        SmartAlternative {
            applied: replacements.len() == ucs2_characters.len(),
            replacements,
            count: smart,
        }
    });
    Explanation {
        count: count(text, Options::default()).ok(),
        ucs2_characters,
        smart_encoding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::Encoding;

    /// An all-GSM text has nothing to explain.
    #[test]
    fn gsm_text() {
        let explained = explain("Hello {world} €5");
        let counted = explained.count.unwrap();
        assert_eq!(counted.encoding, Encoding::Gsm7);
        assert_eq!(counted.units, 19);
        assert!(explained.ucs2_characters.is_empty());
        assert_eq!(explained.smart_encoding, None);
    }

    /// Curly quotes force UCS-2 at their character positions; Smart Encoding would replace them
    /// and send GSM-7.
    #[test]
    fn smart_encoding_fixes_quotes() {
        let explained = explain("é “hi”");
        assert_eq!(explained.count.as_ref().unwrap().encoding, Encoding::Ucs2);
        let positions: Vec<_> = explained
            .ucs2_characters
            .iter()
            .map(|c| (c.position, c.character))
            .collect();
        // `é` is GSM; the quotes are at characters 2 and 5.
        assert_eq!(positions, [(2, '“'), (5, '”')]);
        let smart = explained.smart_encoding.unwrap();
        assert!(smart.applied);
        assert_eq!(smart.replacements.len(), 2);
        assert_eq!(smart.replacements[0].replacement, "\"");
        assert_eq!(smart.count.unwrap().encoding, Encoding::Gsm7);
    }

    /// With an emoji left, Smart Encoding would not apply: the text goes out as UCS-2 untouched.
    #[test]
    fn smart_encoding_does_not_apply_with_an_emoji() {
        let explained = explain("“hi” 😀");
        assert_eq!(explained.ucs2_characters.len(), 3);
        assert_eq!(explained.ucs2_characters[2].position, 5);
        let smart = explained.smart_encoding.unwrap();
        assert!(!smart.applied);
        assert_eq!(smart.count.unwrap().encoding, Encoding::Ucs2);
    }

    /// An empty text has no count, and explaining it does not fail.
    #[test]
    fn empty_text() {
        let explained = explain("");
        assert_eq!(explained.count, None);
        assert!(explained.ucs2_characters.is_empty());
    }
}
