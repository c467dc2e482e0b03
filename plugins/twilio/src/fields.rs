//! Parsing of the value formats Twilio uses in both its JSON and its webhooks: segment counts and
//! prices, which Twilio sends as decimal strings.

use crate::bindings::herald::plugin::types::Money;

/// Reads a segment count such as `"2"`.
///
/// `"0"` reads as unknown: Twilio reports 0 while a Messaging Service has not picked a sender yet,
/// and a real SMS always has at least one segment.
pub fn segments(text: &str) -> Option<u32> {
    match text.trim().parse::<u32>() {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// Reads a Twilio price such as `"-0.00790"` with its unit (`"USD"` or `"usd"`) as a positive cost
/// in micros. Twilio writes charges as negative amounts; the sign is dropped because the contract's
/// price is always a cost. Returns `None` for anything that is not a plain decimal number, or when
/// the unit is missing: a price is informational and must never fail an otherwise good result.
pub fn price(amount: &str, unit: Option<&str>) -> Option<Money> {
    let unit = unit.map(str::trim).filter(|u| !u.is_empty())?;
    let micros = decimal_micros(amount.trim())?;
    Some(Money {
        micros: micros.checked_abs()?,
        currency: unit.to_ascii_uppercase(),
    })
}

/// Converts a decimal string (optional sign, digits, optional fraction) to millionths, rounding
/// half away from zero past the sixth decimal, without going through a float.
fn decimal_micros(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut micros: i64 = 0;
    for b in whole.bytes() {
        micros = micros.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    micros = micros.checked_mul(1_000_000)?;
    let fraction = fraction.as_bytes();
    let mut scale = 100_000;
    for &b in fraction.iter().take(6) {
        micros = micros.checked_add(i64::from(b - b'0') * scale)?;
        scale /= 10;
    }
    if fraction.get(6).is_some_and(|&b| b >= b'5') {
        micros = micros.checked_add(1)?;
    }
    Some(if negative { -micros } else { micros })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn negative_charge_becomes_positive_micros() {
        let money = price("-0.00790", Some("USD")).unwrap();
        assert_eq!(money.micros, 7900);
        assert_eq!(money.currency, "USD");
    }

    #[test]
    fn price_formats() {
        assert_eq!(price("0.0075", Some("usd")).unwrap().micros, 7500);
        assert_eq!(price("0.0075", Some("usd")).unwrap().currency, "USD");
        assert_eq!(price("-1.5", Some("EUR")).unwrap().micros, 1_500_000);
        assert_eq!(price("12", Some("EUR")).unwrap().micros, 12_000_000);
        assert_eq!(price("-0.0000004", Some("EUR")).unwrap().micros, 0);
        assert_eq!(price("-0.0000005", Some("EUR")).unwrap().micros, 1);
        assert_eq!(price(".5", Some("EUR")).unwrap().micros, 500_000);
    }

    #[test]
    fn unusable_prices_are_none() {
        assert!(price("-0.0079", None).is_none());
        assert!(price("-0.0079", Some("")).is_none());
        assert!(price("", Some("USD")).is_none());
        assert!(price("-", Some("USD")).is_none());
        assert!(price(".", Some("USD")).is_none());
        assert!(price("1e3", Some("USD")).is_none());
        assert!(price("99999999999999999999", Some("USD")).is_none());
    }

    #[test]
    fn segment_counts() {
        assert_eq!(segments("2"), Some(2));
        assert_eq!(segments(" 1 "), Some(1));
        assert_eq!(segments("0"), None);
        assert_eq!(segments("x"), None);
    }
}
