//! What the carrier reports and bills: a rough segment count and Twilio's per-segment price.
//!
//! Herald counts segments exactly and keeps its own count; the carrier only needs a plausible
//! `num_segments` / `NumSegments` and a price that follows it, as Twilio reports them. The rule is
//! deliberately rough: an all-ASCII body is GSM-7 (160 characters in one segment, 153 per segment
//! once split), anything else is UCS-2 (70 UTF-16 units, 67 per segment). It ignores GSM-7's
//! non-ASCII letters (é, £, …), its two-septet characters (`€`, `[`, …) and the rule that a split
//! never cuts a character in two, so near those limits it can differ from Herald by a segment.

/// Price per segment, in units of 0.00001 USD (a US long code: 0.0083).
const PRICE_PER_SEGMENT: usize = 830;

/// The carrier's rough segment count of `body` (at least 1).
pub(crate) fn rough_segments(body: &str) -> usize {
    let (units, single, per_segment) = if body.is_ascii() {
        (body.len(), 160, 153)
    } else {
        (body.encode_utf16().count(), 70, 67)
    };
    if units <= single {
        1
    } else {
        units.div_ceil(per_segment)
    }
}

/// Twilio's price string for `segments` segments: negative, five decimals, e.g. `-0.00830`.
pub(crate) fn format_price(segments: usize) -> String {
    let total = PRICE_PER_SEGMENT * segments;
    format!("-{}.{:05}", total / 100_000, total % 100_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ASCII bodies split at 160 / 153 characters, others at 70 / 67 UTF-16 units.
    #[test]
    fn rough_counts() {
        assert_eq!(rough_segments(""), 1);
        assert_eq!(rough_segments(&"a".repeat(160)), 1);
        assert_eq!(rough_segments(&"a".repeat(161)), 2);
        assert_eq!(rough_segments(&"a".repeat(307)), 3);
        assert_eq!(rough_segments(&"ç".repeat(70)), 1);
        assert_eq!(rough_segments(&"ç".repeat(71)), 2);
        assert_eq!(rough_segments("Привет"), 1);
    }

    /// Prices are negative, five decimals, per segment.
    #[test]
    fn price_format() {
        assert_eq!(format_price(1), "-0.00830");
        assert_eq!(format_price(3), "-0.02490");
        assert_eq!(format_price(200), "-1.66000");
    }
}
