//! Twilio Smart Encoding: the table that replaces look-alike Unicode characters
//! with GSM characters, and the function that applies it.
//!
//! The table is the one in `sms-protocols.md` §1.4 (Twilio's published list, as
//! mirrored by the `SmartEncodingMap` of Twilio's segment calculator), with two
//! deliberate readings of that reference:
//! * U+2039 `‹` becomes `<` and U+203A `›` becomes `>` (some calculator versions
//!   swap them; the reference table and the glyphs agree on this direction);
//! * U+200C (zero-width non-joiner) is removed, as the reference lists it.
//!
//! The NBSP-class spaces become **two** spaces, exactly as the calculator writes
//! them (the reference marks this as unverified against Twilio's own table).
//!
//! Every key of the table is outside the GSM alphabet and every replacement is
//! made only of GSM characters, so applying the table to all-GSM text changes
//! nothing and applying it twice is the same as applying it once.

use std::borrow::Cow;

/// Fullwidth and small-capital letters map to these upper-case ASCII letters.
const LETTERS: [&str; 26] = [
    "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S",
    "T", "U", "V", "W", "X", "Y", "Z",
];

/// Fullwidth digits map to these ASCII digits.
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Returns the GSM text that Smart Encoding puts in place of `c` (possibly
/// empty, meaning `c` is dropped), or `None` when the table leaves `c` alone.
#[must_use]
pub fn replacement(c: char) -> Option<&'static str> {
    let r = match c {
        '\u{00AB}' | '\u{00BB}' | '\u{201C}' | '\u{201D}' | '\u{02BA}' | '\u{02EE}'
        | '\u{201F}' | '\u{201E}' | '\u{275D}' | '\u{275E}' | '\u{301D}' | '\u{301E}'
        | '\u{FF02}' => "\"",
        '\u{2018}' | '\u{2019}' | '\u{02BB}' | '\u{02C8}' | '\u{02BC}' | '\u{02BD}'
        | '\u{02B9}' | '\u{201B}' | '\u{FF07}' | '\u{00B4}' | '\u{02CA}' | '\u{0060}'
        | '\u{02CB}' | '\u{275B}' | '\u{275C}' | '\u{0313}' | '\u{0314}' | '\u{FE10}'
        | '\u{FE11}' => "'",
        '\u{00F7}' | '\u{29F8}' | '\u{0337}' | '\u{0338}' | '\u{2044}' | '\u{2215}'
        | '\u{FF0F}' => "/",
        '\u{00BC}' => "1/4",
        '\u{00BD}' => "1/2",
        '\u{00BE}' => "3/4",
        '\u{29F9}' | '\u{29F5}' | '\u{20E5}' | '\u{FE68}' | '\u{FF3C}' => "\\",
        '\u{0332}' | '\u{FF3F}' | '\u{2017}' => "_",
        '\u{20D2}' | '\u{20D3}' | '\u{2223}' | '\u{FF5C}' | '\u{23B8}' | '\u{23B9}'
        | '\u{23D0}' | '\u{239C}' | '\u{239F}' => "|",
        '\u{23BC}' | '\u{23BD}' | '\u{2015}' | '\u{FE63}' | '\u{FF0D}' | '\u{2010}'
        | '\u{2043}' | '\u{2014}' | '\u{2013}' | '\u{2022}' => "-",
        '\u{FE6B}' | '\u{FF20}' => "@",
        '\u{FE69}' | '\u{FF04}' => "$",
        '\u{01C3}' | '\u{FE15}' | '\u{FE57}' | '\u{FF01}' => "!",
        '\u{FE5F}' | '\u{FF03}' => "#",
        '\u{FE6A}' | '\u{FF05}' => "%",
        '\u{FE60}' | '\u{FF06}' => "&",
        '\u{201A}' | '\u{0326}' | '\u{FE50}' | '\u{FE51}' | '\u{FF0C}' | '\u{FF64}'
        | '\u{3001}' => ",",
        '\u{2768}' | '\u{276A}' | '\u{FE59}' | '\u{FF08}' | '\u{27EE}' | '\u{2985}' => "(",
        '\u{2769}' | '\u{276B}' | '\u{FE5A}' | '\u{FF09}' | '\u{27EF}' | '\u{2986}' => ")",
        '\u{204E}'
        | '\u{2217}'
        | '\u{229B}'
        | '\u{2722}'..='\u{2725}'
        | '\u{2731}'..='\u{2733}'
        | '\u{273A}'..='\u{273D}'
        | '\u{2743}'
        | '\u{2749}'..='\u{274B}'
        | '\u{29C6}'
        | '\u{FE61}'
        | '\u{FF0A}' => "*",
        '\u{02D6}' | '\u{FE62}' | '\u{FF0B}' => "+",
        '\u{3002}' | '\u{FE52}' | '\u{FF0E}' | '\u{FF61}' => ".",
        '\u{FF10}'..='\u{FF19}' => return DIGITS.get(offset(c, '\u{FF10}')).copied(),
        '\u{02D0}' | '\u{02F8}' | '\u{2982}' | '\u{A789}' | '\u{FE13}' | '\u{FF1A}' => ":",
        '\u{204F}' | '\u{FE14}' | '\u{FE54}' | '\u{FF1B}' => ";",
        '\u{FE64}' | '\u{FF1C}' | '\u{2039}' => "<",
        '\u{0347}' | '\u{A78A}' | '\u{FE66}' | '\u{FF1D}' => "=",
        '\u{FE65}' | '\u{FF1E}' | '\u{203A}' => ">",
        '\u{FE16}' | '\u{FE56}' | '\u{FF1F}' => "?",
        '\u{FF21}'..='\u{FF3A}' => return LETTERS.get(offset(c, '\u{FF21}')).copied(),
        // Small capitals (there are none for Q and X in the table).
        '\u{1D00}' => "A",
        '\u{0299}' => "B",
        '\u{1D04}' => "C",
        '\u{1D05}' => "D",
        '\u{1D07}' => "E",
        '\u{A730}' => "F",
        '\u{0262}' => "G",
        '\u{029C}' => "H",
        '\u{026A}' => "I",
        '\u{1D0A}' => "J",
        '\u{1D0B}' => "K",
        '\u{029F}' => "L",
        '\u{1D0D}' => "M",
        '\u{0274}' => "N",
        '\u{1D0F}' => "O",
        '\u{1D18}' => "P",
        '\u{0280}' => "R",
        '\u{A731}' => "S",
        '\u{1D1B}' => "T",
        '\u{1D1C}' => "U",
        '\u{1D20}' => "V",
        '\u{1D21}' => "W",
        '\u{028F}' => "Y",
        '\u{1D22}' => "Z",
        '\u{02C6}' | '\u{0302}' | '\u{FF3E}' | '\u{1DCD}' => "^",
        '\u{2774}' | '\u{FE5B}' | '\u{FF5B}' => "{",
        '\u{2775}' | '\u{FE5C}' | '\u{FF5D}' => "}",
        '\u{FF3B}' => "[",
        '\u{FF3D}' => "]",
        '\u{02DC}' | '\u{02F7}' | '\u{0303}' | '\u{0330}' | '\u{0334}' | '\u{223C}'
        | '\u{FF5E}' => "~",
        '\u{00A0}'
        | '\u{2000}'
        | '\u{2002}'..='\u{200A}'
        | '\u{202F}'
        | '\u{205F}'
        | '\u{3000}'
        | '\u{0080}'
        | '\u{008D}'
        | '\u{0090}'
        | '\u{009B}'
        | '\u{009F}' => "  ",
        '\u{2001}' | '\u{2028}' | '\u{2029}' => " ",
        '\u{0000}'
        | '\u{0003}'
        | '\u{0004}'
        | '\u{0010}'..='\u{0014}'
        | '\u{0017}'
        | '\u{0019}'
        | '\u{200B}'
        | '\u{200C}'
        | '\u{2060}'
        | '\u{FEFF}' => "",
        '\u{0009}' => "       ",
        '\u{203C}' => "!!",
        '\u{2026}' => "...",
        _ => return None,
    };
    Some(r)
}

/// Distance of `c` from `base`, as an index into a lookup table.
fn offset(c: char, base: char) -> usize {
    (c as u32).saturating_sub(base as u32) as usize
}

/// Applies the Smart Encoding table to `text`, borrowing it unchanged when no
/// character of it is in the table.
#[must_use]
pub fn smart_encode(text: &str) -> Cow<'_, str> {
    let Some((first, _)) = text.char_indices().find(|&(_, c)| replacement(c).is_some()) else {
        return Cow::Borrowed(text);
    };
    let (head, tail) = text.split_at(first);
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(head);
    for c in tail.chars() {
        match replacement(c) {
            Some(r) => out.push_str(r),
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}
