//! SMS segment counting: picks GSM-7 or UCS-2 for a message body, counts its
//! septets or UTF-16 units, and predicts how many billed segments it needs.
//!
//! The rules follow `sms-protocols.md` §1 and Twilio's message segment calculator:
//! * GSM-7 if every character is in the GSM 03.38 alphabet ([`gsm`]), else UCS-2.
//! * One segment up to 160 septets / 70 units; above that every segment carries a
//!   UDH and holds 153 septets / 67 units.
//! * Segments are filled greedily, and nothing unsplittable straddles a boundary:
//!   a GSM escape pair, a UTF-16 surrogate pair, or (in UCS-2) an extended grapheme
//!   cluster, except that CRLF counts as two characters.  A cluster too big for a
//!   whole segment is split between code points instead.
//! * Smart Encoding ([`smart`]) is all-or-nothing, as Twilio describes it: the
//!   replacement table is applied, and if the result is entirely GSM that result is
//!   what is counted and sent (as GSM-7).  If some character has no GSM stand-in
//!   (an emoji, a CJK character, …) the message goes out as UCS-2 anyway, so the
//!   **original** text is counted and sent untouched: replacing curly quotes or
//!   tabs would then only lose fidelity and, for tabs, ellipses or NBSPs, cost more
//!   units.  Twilio's announcement of the feature
//!   (<https://www.twilio.com/blog/copilot-just-got-even-smarter-announcing-smart-encoding-html>)
//!   says it translates only when "no characters that can't be converted" are in
//!   the message.  Twilio's JavaScript calculator instead keeps the replaced text in
//!   that mixed case, so for such messages it may report a few more UCS-2 units.
//!   The host does the replacement itself and must send exactly the text returned
//!   by [`encode_for_send`], without asking the provider to smart-encode again.
//!
//! Empty bodies are rejected, like Twilio does (error 21602).

pub mod explain;
pub mod gsm;
pub mod smart;
#[cfg(test)]
mod tests;

pub use explain::{Explanation, explain};
pub use smart::smart_encode;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Serialize;
use unicode_segmentation::UnicodeSegmentation;

/// The character encoding an SMS is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Encoding {
    /// The GSM 03.38 default alphabet, 7 bits per character (escaped characters take 14).
    #[serde(rename = "GSM-7")]
    Gsm7,
    /// UCS-2 (in practice UTF-16), 16 bits per code unit.
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl Encoding {
    /// Returns the conventional name of the encoding: `"GSM-7"` or `"UCS-2"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gsm7 => "GSM-7",
            Self::Ucs2 => "UCS-2",
        }
    }

    /// Returns how many units (septets or UTF-16 units) fit in a message sent as one segment.
    #[must_use]
    pub const fn single_segment_limit(self) -> u32 {
        match self {
            Self::Gsm7 => 160,
            Self::Ucs2 => 70,
        }
    }

    /// Returns how many units fit in each segment of a concatenated (multi-segment) message.
    #[must_use]
    pub const fn multi_segment_limit(self) -> u32 {
        match self {
            Self::Gsm7 => 153,
            Self::Ucs2 => 67,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The encoding, size and segment count predicted for one message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentCount {
    /// The encoding the body is sent in.
    pub encoding: Encoding,
    /// The number of billed segments (at least 1).
    pub segments: u32,
    /// The body's size: septets for GSM-7 (escaped characters count 2), UTF-16 code units for UCS-2.
    pub units: u32,
    /// The number of Unicode scalar values in the counted (possibly smart-encoded) body.
    pub characters: u32,
    /// The distinct characters that forced UCS-2, in order of first appearance (empty for GSM-7).
    pub non_gsm: Vec<char>,
    /// The capacity of each segment in `units`: 160 or 153 for GSM-7, 70 or 67 for UCS-2.
    pub per_segment_limit: u32,
}

/// Options that change how a body is encoded before counting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Whether to apply Twilio Smart Encoding (look-alike characters replaced by GSM ones).
    pub smart_encoding: bool,
}

/// Why a body cannot be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// The body is empty, or Smart Encoding removed every character of it; an SMS needs a body.
    #[error("message body is empty")]
    Empty,
}

/// Predicts the encoding and segment count of `text` as it would be sent with `options`.
///
/// # Errors
///
/// [`SegmentError::Empty`] if `text` is empty or Smart Encoding removes all of it.
pub fn count(text: &str, options: Options) -> Result<SegmentCount, SegmentError> {
    encode_for_send(text, options).map(|(_, counted)| counted)
}

/// Returns the exact body to send for `text` under `options` together with its segment count.
///
/// # Errors
///
/// [`SegmentError::Empty`] if `text` is empty or Smart Encoding removes all of it.
pub fn encode_for_send(
    text: &str,
    options: Options,
) -> Result<(Cow<'_, str>, SegmentCount), SegmentError> {
    if text.is_empty() {
        return Err(SegmentError::Empty);
    }
    let scanned = Scan::of(text);
    if scanned.non_gsm.is_empty() {
        // Already all-GSM; Smart Encoding only touches non-GSM characters, so it would be a no-op.
        let counted = count_gsm(text, scanned.septets);
        return Ok((Cow::Borrowed(text), counted));
    }
    if options.smart_encoding
        && let Cow::Owned(replaced) = smart_encode(text)
    {
        if replaced.is_empty() {
            return Err(SegmentError::Empty);
        }
        let rescanned = Scan::of(&replaced);
        if rescanned.non_gsm.is_empty() {
            let counted = count_gsm(&replaced, rescanned.septets);
            return Ok((Cow::Owned(replaced), counted));
        }
        // Still UCS-2: send the original; the characters that forced UCS-2 are the
        // ones the table could not replace, which are exactly the replaced text's.
        let counted = count_ucs2(text, rescanned.non_gsm);
        return Ok((Cow::Borrowed(text), counted));
    }
    let counted = count_ucs2(text, scanned.non_gsm);
    Ok((Cow::Borrowed(text), counted))
}

/// One pass over a body: its GSM-7 size and the distinct characters GSM cannot carry.
struct Scan {
    /// Septets the body would take in GSM-7 (meaningless once `non_gsm` is non-empty).
    septets: usize,
    /// Distinct non-GSM characters in order of first appearance.
    non_gsm: Vec<char>,
}

impl Scan {
    /// Scans `text`.
    fn of(text: &str) -> Self {
        let mut septets = 0usize;
        let mut non_gsm = Distinct::default();
        for c in text.chars() {
            match gsm::cost(c) {
                0 => non_gsm.insert(c),
                n => septets += usize::from(n),
            }
        }
        Self {
            septets,
            non_gsm: non_gsm.order,
        }
    }
}

/// An insertion-ordered set of characters; linear search while small, hashed once large.
#[derive(Default)]
struct Distinct {
    /// The characters in order of first insertion.
    order: Vec<char>,
    /// The same characters, filled only once `order` outgrows [`Distinct::LINEAR`].
    seen: HashSet<char>,
}

impl Distinct {
    /// Size up to which a linear scan of `order` is cheaper than hashing.
    const LINEAR: usize = 32;

    /// Adds `c` unless it is already present.
    fn insert(&mut self, c: char) {
        if self.order.len() < Self::LINEAR {
            if !self.order.contains(&c) {
                self.order.push(c);
            }
            return;
        }
        if self.seen.is_empty() {
            self.seen.extend(self.order.iter().copied());
        }
        if self.seen.insert(c) {
            self.order.push(c);
        }
    }
}

/// Greedy segment packer: starts a new segment when the next unsplittable unit does not fit.
struct Packer {
    /// Capacity of one segment.
    limit: usize,
    /// Units used in the current segment.
    used: usize,
    /// Segments opened so far.
    segments: usize,
}

impl Packer {
    /// Creates a packer with one empty segment of capacity `limit`.
    fn new(limit: u32) -> Self {
        Self {
            limit: limit as usize,
            used: 0,
            segments: 1,
        }
    }

    /// Places an unsplittable unit of size `size`.
    fn push(&mut self, size: usize) {
        if self.used > 0 && self.used + size > self.limit {
            self.segments += 1;
            self.used = 0;
        }
        self.used += size;
    }
}

/// Counts an all-GSM body whose size is `septets`.
fn count_gsm(text: &str, septets: usize) -> SegmentCount {
    let encoding = Encoding::Gsm7;
    let characters = text.chars().count();
    let (segments, per_segment_limit) = if septets <= encoding.single_segment_limit() as usize {
        (1, encoding.single_segment_limit())
    } else {
        // In GSM text every grapheme cluster is a single character except CRLF, which is
        // counted as two anyway, so the unsplittable units are characters: 1 or 2 septets.
        let mut packer = Packer::new(encoding.multi_segment_limit());
        for c in text.chars() {
            packer.push(usize::from(gsm::cost(c)));
        }
        (packer.segments, encoding.multi_segment_limit())
    };
    SegmentCount {
        encoding,
        segments: to_u32(segments),
        units: to_u32(septets),
        characters: to_u32(characters),
        non_gsm: Vec::new(),
        per_segment_limit,
    }
}

/// Counts `text` as UCS-2, reporting `non_gsm` as the characters that forced it.
fn count_ucs2(text: &str, non_gsm: Vec<char>) -> SegmentCount {
    let encoding = Encoding::Ucs2;
    let (characters, units) = text
        .chars()
        .fold((0usize, 0usize), |(n, u), c| (n + 1, u + c.len_utf16()));
    let (segments, per_segment_limit) = if units <= encoding.single_segment_limit() as usize {
        (1, encoding.single_segment_limit())
    } else {
        let limit = encoding.multi_segment_limit();
        let mut packer = Packer::new(limit);
        for grapheme in text.graphemes(true) {
            if grapheme == "\r\n" {
                // Twilio's calculator splits the CRLF cluster into two characters.
                packer.push(1);
                packer.push(1);
                continue;
            }
            let size: usize = grapheme.chars().map(char::len_utf16).sum();
            if size <= limit as usize {
                packer.push(size);
            } else {
                // A cluster bigger than a whole segment cannot be kept whole: split it
                // between code points, keeping each surrogate pair together.
                for c in grapheme.chars() {
                    packer.push(c.len_utf16());
                }
            }
        }
        (packer.segments, limit)
    };
    SegmentCount {
        encoding,
        segments: to_u32(segments),
        units: to_u32(units),
        characters: to_u32(characters),
        non_gsm,
        per_segment_limit,
    }
}

/// Converts a count to `u32`, saturating (bodies are far below 4 GiB in practice).
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
