//! Unit tests for the segment counter, the GSM table and the Smart Encoding table.

use super::*;

/// Counts `text` without Smart Encoding, failing the test on error.
fn plain(text: &str) -> SegmentCount {
    match count(text, Options::default()) {
        Ok(counted) => counted,
        Err(e) => panic!("count({text:?}) failed: {e}"),
    }
}

/// Encodes `text` with Smart Encoding, failing the test on error.
fn smart(text: &str) -> (Cow<'_, str>, SegmentCount) {
    match encode_for_send(
        text,
        Options {
            smart_encoding: true,
        },
    ) {
        Ok(pair) => pair,
        Err(e) => panic!("encode_for_send({text:?}) failed: {e}"),
    }
}

/// Asserts encoding, unit total and segment count of `text` counted without Smart Encoding.
fn check(text: &str, encoding: Encoding, units: u32, segments: u32) -> SegmentCount {
    let counted = plain(text);
    assert_eq!(counted.encoding, encoding, "encoding of {text:?}");
    assert_eq!(counted.units, units, "units of {text:?}");
    assert_eq!(counted.segments, segments, "segments of {text:?}");
    counted
}

/// A non-GSM BMP character used to force UCS-2.
const ZHE: &str = "ж";

/// 160 GSM septets fit one segment with the 160 limit.
#[test]
fn gsm_160_is_one_segment() {
    let counted = check(&"a".repeat(160), Encoding::Gsm7, 160, 1);
    assert_eq!(counted.per_segment_limit, 160);
    assert_eq!(counted.characters, 160);
    assert!(counted.non_gsm.is_empty());
}

/// 161 GSM septets need two segments of 153.
#[test]
fn gsm_161_is_two_segments() {
    let counted = check(&"a".repeat(161), Encoding::Gsm7, 161, 2);
    assert_eq!(counted.per_segment_limit, 153);
}

/// 153 and 154 septets are still single-segment messages.
#[test]
fn gsm_153_and_154_are_single_segment() {
    check(&"a".repeat(153), Encoding::Gsm7, 153, 1);
    check(&"a".repeat(154), Encoding::Gsm7, 154, 1);
}

/// 306 septets (153 × 2) fill exactly two segments and 307 need three.
#[test]
fn gsm_306_is_two_and_307_is_three() {
    check(&"a".repeat(306), Encoding::Gsm7, 306, 2);
    check(&"a".repeat(307), Encoding::Gsm7, 307, 3);
}

/// 1530 septets fill exactly ten segments.
#[test]
fn gsm_1530_is_ten_segments() {
    check(&"a".repeat(1530), Encoding::Gsm7, 1530, 10);
    check(&"a".repeat(1531), Encoding::Gsm7, 1531, 11);
}

/// 70 UCS-2 units fit one segment and 71 need two.
#[test]
fn ucs2_70_is_one_and_71_is_two() {
    let one = check(&ZHE.repeat(70), Encoding::Ucs2, 70, 1);
    assert_eq!(one.per_segment_limit, 70);
    let two = check(&ZHE.repeat(71), Encoding::Ucs2, 71, 2);
    assert_eq!(two.per_segment_limit, 67);
}

/// 67 and 68 UCS-2 units are still single-segment messages.
#[test]
fn ucs2_67_and_68_are_single_segment() {
    check(&ZHE.repeat(67), Encoding::Ucs2, 67, 1);
    check(&ZHE.repeat(68), Encoding::Ucs2, 68, 1);
}

/// 134 UCS-2 units (67 × 2) fill two segments and 135 need three.
#[test]
fn ucs2_134_is_two_and_135_is_three() {
    check(&ZHE.repeat(134), Encoding::Ucs2, 134, 2);
    check(&ZHE.repeat(135), Encoding::Ucs2, 135, 3);
}

/// An escape pair straddling the 153 boundary moves whole to the next segment.
#[test]
fn escape_pair_is_never_split() {
    let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
    check(&text, Encoding::Gsm7, 306, 3);
}

/// An escape pair ending exactly on the 153 boundary stays in the first segment.
#[test]
fn escape_pair_exactly_at_boundary_fits() {
    let text = format!("{}€{}", "a".repeat(151), "a".repeat(153));
    check(&text, Encoding::Gsm7, 306, 2);
}

/// 153 closing brackets are 306 septets but three segments, as Twilio billed them.
#[test]
fn brackets_153_are_three_segments() {
    check(&"]".repeat(153), Encoding::Gsm7, 306, 3);
}

/// 80 euro signs are 160 septets in one segment, 81 are two.
#[test]
fn euro_signs_at_single_segment_limit() {
    check(&"€".repeat(80), Encoding::Gsm7, 160, 1);
    check(&"€".repeat(81), Encoding::Gsm7, 162, 2);
}

/// A surrogate pair straddling the 67 boundary moves whole to the next segment.
#[test]
fn surrogate_pair_is_never_split() {
    let text = format!("{}😀{}", "a".repeat(66), "a".repeat(66));
    let counted = check(&text, Encoding::Ucs2, 134, 3);
    assert_eq!(counted.characters, 133);
    assert_eq!(counted.non_gsm, vec!['😀']);
}

/// A surrogate pair ending exactly on the 67 boundary stays in the first segment.
#[test]
fn surrogate_pair_exactly_at_boundary_fits() {
    let text = format!("{}😀{}", "a".repeat(65), "a".repeat(67));
    check(&text, Encoding::Ucs2, 134, 2);
}

/// Astral characters cost two units: 35 emoji fit one segment, 36 need two.
#[test]
fn astral_characters_cost_two_units() {
    check(&"😀".repeat(35), Encoding::Ucs2, 70, 1);
    check(&"😀".repeat(36), Encoding::Ucs2, 72, 2);
}

/// 70 precomposed é (U+00E9) are GSM-7 and fit one segment.
#[test]
fn precomposed_e_acute_is_gsm() {
    check(&"é".repeat(70), Encoding::Gsm7, 70, 1);
}

/// 70 decomposed é (e + U+0301) force UCS-2 and, kept as clusters, need three segments.
#[test]
fn decomposed_e_acute_is_ucs2() {
    let counted = check(&"e\u{301}".repeat(70), Encoding::Ucs2, 140, 3);
    assert_eq!(counted.characters, 140);
    assert_eq!(counted.non_gsm, vec!['\u{301}']);
}

/// Lower-case ç forces UCS-2 while capital Ç is GSM.
#[test]
fn c_cedilla_case_matters() {
    let lower = check("ça va", Encoding::Ucs2, 5, 1);
    assert_eq!(lower.non_gsm, vec!['ç']);
    check("Ça va", Encoding::Gsm7, 5, 1);
}

/// A raw ESC (U+001B) is not a GSM character and forces UCS-2.
#[test]
fn raw_escape_forces_ucs2() {
    let counted = check("a\u{1B}b", Encoding::Ucs2, 3, 1);
    assert_eq!(counted.non_gsm, vec!['\u{1B}']);
}

/// 80 a + CRLF + 79 a is 161 septets in two segments, as Twilio billed it.
#[test]
fn crlf_counts_as_two_gsm_characters() {
    let text = format!("{}\r\n{}", "a".repeat(80), "a".repeat(79));
    let counted = check(&text, Encoding::Gsm7, 161, 2);
    assert_eq!(counted.characters, 161);
}

/// In UCS-2 the CRLF cluster is split so CR and LF can land in different segments.
#[test]
fn crlf_may_straddle_a_ucs2_boundary() {
    // Kept whole, CRLF would not fit after 66 units and the message would need three segments.
    let text = format!("{}\r\n{}", ZHE.repeat(66), ZHE.repeat(66));
    check(&text, Encoding::Ucs2, 134, 2);
}

/// The ten extension characters cost 2 septets in GSM-7 but 1 unit each in UCS-2.
#[test]
fn extension_characters_cost_one_unit_in_ucs2() {
    let ext = "\u{C}^{}\\[~]|€";
    check(ext, Encoding::Gsm7, 20, 1);
    check(&format!("{ext}{ZHE}"), Encoding::Ucs2, 11, 1);
}

/// `non_gsm` lists each forcing character once, in order of first appearance.
#[test]
fn non_gsm_lists_distinct_forcing_characters() {
    let counted = plain("héllo ж wörld ж 😀 ç ж");
    assert_eq!(counted.encoding, Encoding::Ucs2);
    assert_eq!(counted.non_gsm, vec!['ж', '😀', 'ç']);
}

/// `non_gsm` stays distinct and ordered past the size where it switches to hashing.
#[test]
fn non_gsm_many_distinct_characters() {
    let text: String = ('\u{4E00}'..='\u{4E63}')
        .chain('\u{4E00}'..='\u{4E63}')
        .collect();
    let counted = plain(&text);
    let expected: Vec<char> = ('\u{4E00}'..='\u{4E63}').collect();
    assert_eq!(counted.non_gsm, expected);
    assert_eq!(counted.units, 200);
}

/// Smart Encoding turns curly quotes, dashes, ellipsis, NBSP and tab into GSM text.
#[test]
fn smart_encoding_makes_gsm() {
    let text =
        "\u{201C}Hi\u{201D} \u{2014} it\u{2019}s\u{2026}\u{A0}ok\tnow \u{2013} \u{2018}x\u{2019}";
    let (sent, counted) = smart(text);
    assert_eq!(sent, "\"Hi\" - it's...  ok       now - 'x'");
    assert_eq!(counted.encoding, Encoding::Gsm7);
    assert_eq!(counted.units, 34);
    assert_eq!(counted.characters, 34);
    assert_eq!(counted.segments, 1);
    assert!(counted.non_gsm.is_empty());
    assert_eq!(
        count(
            text,
            Options {
                smart_encoding: true
            }
        ),
        Ok(counted)
    );
}

/// Without Smart Encoding the same look-alike characters force UCS-2.
#[test]
fn look_alikes_without_smart_encoding_are_ucs2() {
    let text = "\u{201C}Hi\u{201D} \u{2014}\u{2026}\u{A0}\t";
    let counted = plain(text);
    assert_eq!(counted.encoding, Encoding::Ucs2);
    assert_eq!(
        counted.non_gsm,
        vec![
            '\u{201C}', '\u{201D}', '\u{2014}', '\u{2026}', '\u{A0}', '\t'
        ]
    );
}

/// With an emoji Smart Encoding cannot reach GSM, so the original text is sent as UCS-2.
#[test]
fn smart_encoding_with_emoji_stays_ucs2() {
    let text = "\u{201C}Hi\u{201D}\u{2026} 😀";
    let (sent, counted) = smart(text);
    assert!(matches!(sent, Cow::Borrowed(_)));
    assert_eq!(sent, text);
    assert_eq!(counted.encoding, Encoding::Ucs2);
    assert_eq!(counted.units, 8);
    assert_eq!(counted.characters, 7);
    assert_eq!(counted.non_gsm, vec!['😀']);
}

/// Smart Encoding leaves all-GSM text borrowed and unchanged.
#[test]
fn smart_encoding_leaves_gsm_text_alone() {
    let (sent, counted) = smart("Hello {world} €5");
    assert!(matches!(sent, Cow::Borrowed("Hello {world} €5")));
    assert_eq!(counted.units, 19);
    assert!(matches!(smart_encode("plain"), Cow::Borrowed("plain")));
}

/// Fullwidth and small-capital letters, fullwidth digits and fractions are replaced.
#[test]
fn smart_encoding_letters_digits_fractions() {
    assert_eq!(
        smart_encode("\u{FF21}\u{FF3A}\u{1D00}\u{0299}\u{FF10}\u{FF19}\u{BD}"),
        "AZAB091/2"
    );
    // Fullwidth lower-case letters are not in the table.
    assert_eq!(smart_encode("\u{FF41}"), "\u{FF41}");
    assert_eq!(smart_encode("\u{2039}x\u{203A}"), "<x>");
}

/// Empty text is rejected, with or without Smart Encoding.
#[test]
fn empty_text_is_an_error() {
    assert_eq!(count("", Options::default()), Err(SegmentError::Empty));
    assert_eq!(
        count(
            "",
            Options {
                smart_encoding: true
            }
        ),
        Err(SegmentError::Empty)
    );
}

/// Text that Smart Encoding removes entirely is rejected as empty.
#[test]
fn text_emptied_by_smart_encoding_is_an_error() {
    assert_eq!(
        count(
            "\u{200B}\u{FEFF}",
            Options {
                smart_encoding: true
            }
        ),
        Err(SegmentError::Empty)
    );
    check("\u{200B}\u{FEFF}", Encoding::Ucs2, 2, 1);
}

/// A grapheme cluster larger than a whole segment is split by code point instead of looping.
#[test]
fn oversized_cluster_is_split_by_code_point() {
    let text = format!("👩{}", "\u{200D}👩".repeat(30));
    assert_eq!(text.graphemes(true).count(), 1);
    // 92 units: 2, then (1, 2) pairs; the first segment closes at 66 units.
    check(&text, Encoding::Ucs2, 92, 2);
    let longer = format!("👩{}", "\u{200D}👩".repeat(500));
    check(&longer, Encoding::Ucs2, 1502, 23);
}

/// The GSM table has 127 one-septet and 10 two-septet characters and no others.
#[test]
fn gsm_table_sizes() {
    let all = (0..=0x10FFFFu32).filter_map(char::from_u32);
    let (mut one, mut two) = (0, 0);
    for c in all {
        match gsm::septets(c) {
            Some(1) => one += 1,
            Some(2) => two += 1,
            Some(n) => panic!("{c:?} costs {n}"),
            None => {}
        }
    }
    assert_eq!((one, two), (127, 10));
    for c in ['@', '$', '¤', '_', '\n', '\r', 'Ç', 'Δ', 'ß', 'à'] {
        assert_eq!(gsm::septets(c), Some(1), "{c:?}");
    }
    for c in ['\u{C}', '^', '{', '}', '\\', '[', '~', ']', '|', '€'] {
        assert_eq!(gsm::septets(c), Some(2), "{c:?}");
    }
    for c in [
        '`', '\t', '\0', '\u{7F}', '\u{1B}', '\u{A0}', 'ç', '¢', '°', 'Α', 'á',
    ] {
        assert!(!gsm::is_gsm(c), "{c:?}");
    }
}

/// Every Smart Encoding key is non-GSM and every replacement is all-GSM, so the table is idempotent.
#[test]
fn smart_table_invariants() {
    let mut keys = 0;
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        if let Some(r) = smart::replacement(c) {
            keys += 1;
            assert!(!gsm::is_gsm(c), "key {c:?} is already GSM");
            assert!(
                r.chars().all(gsm::is_gsm),
                "replacement of {c:?} is not GSM"
            );
        }
    }
    // The reference table (sms-protocols.md §1.4) has 271 entries.
    assert_eq!(keys, 271);
    let once = smart_encode("\u{201C}a\u{2026}\t\u{FF3C}");
    assert_eq!(smart_encode(&once), once);
}

/// Encodings serialize as "GSM-7" / "UCS-2" and a count serializes with all its fields.
#[test]
fn serializes_with_wire_names() {
    assert_eq!(Encoding::Gsm7.as_str(), "GSM-7");
    assert_eq!(Encoding::Ucs2.to_string(), "UCS-2");
    let json = match serde_json::to_string(&plain("ж!")) {
        Ok(json) => json,
        Err(e) => panic!("serialize failed: {e}"),
    };
    assert_eq!(
        json,
        r#"{"encoding":"UCS-2","segments":1,"units":2,"characters":2,"non_gsm":["ж"],"per_segment_limit":70}"#
    );
}
