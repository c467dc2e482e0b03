//! The GSM 03.38 / 3GPP TS 23.038 default alphabet: which Unicode characters
//! a GSM-7 message can carry and how many septets each one costs.
//!
//! The basic table has 128 positions; 0x1B is ESC and not a character, which
//! leaves 127 characters at 1 septet each.  The ten characters of the
//! extension table are sent as ESC + code and cost 2 septets.  No national
//! shift tables are used (Twilio does not use them), so `ç` (U+00E7) is not
//! GSM while `Ç` (U+00C7) is, and a raw ESC (U+001B) in the input is not GSM.
//!
//! The lookup is on the hot path of every send: ASCII goes through a 128-entry
//! table and everything else through a `match` that the compiler lowers to a
//! jump table or binary search.

/// Septet cost per ASCII code point: 0 = not GSM, 1 = basic table, 2 = extension table.
const ASCII_COST: [u8; 128] = build_ascii_cost();

/// Builds [`ASCII_COST`] at compile time.
const fn build_ascii_cost() -> [u8; 128] {
    let mut table = [0u8; 128];
    // Every printable ASCII character is in the basic table ...
    let mut i = 0x20;
    while i < 0x7F {
        table[i] = 1;
        i += 1;
    }
    // ... except the backtick, which GSM does not have at all ...
    table[0x60] = 0;
    // ... and the eight that live in the extension table.
    let extension = [b'^', b'{', b'}', b'\\', b'[', b'~', b']', b'|'];
    let mut j = 0;
    while j < extension.len() {
        table[extension[j] as usize] = 2;
        j += 1;
    }
    // Of the C0 controls only LF and CR are basic characters; form feed is an extension.
    table[0x0A] = 1;
    table[0x0D] = 1;
    table[0x0C] = 2;
    table
}

/// Returns the septet cost of `c` (1 or 2), or 0 when `c` is not in the GSM alphabet.
#[inline]
pub(super) fn cost(c: char) -> u8 {
    let code = c as u32;
    if code < 0x80 {
        // `code < 0x80`, so the index is in bounds; `get` keeps this panic-free anyway.
        return ASCII_COST.get(code as usize).copied().unwrap_or(0);
    }
    match c {
        // Basic table, non-ASCII positions (39 characters).
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' => 1,
        'Δ' | 'Φ' | 'Γ' | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' => 1,
        'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä' | 'Ö' | 'Ñ' | 'Ü' | '§' => 1,
        '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => 1,
        // Extension table, non-ASCII position.
        '€' => 2,
        _ => 0,
    }
}

/// Returns the number of septets `c` costs in a GSM-7 message (1, or 2 for an
/// extension-table character), or `None` when `c` is not in the GSM alphabet.
#[inline]
#[must_use]
pub fn septets(c: char) -> Option<u8> {
    match cost(c) {
        0 => None,
        n => Some(n),
    }
}

/// Returns whether `c` can be sent in a GSM-7 message.
#[inline]
#[must_use]
pub fn is_gsm(c: char) -> bool {
    cost(c) != 0
}
