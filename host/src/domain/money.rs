//! Money as integer micro-units (1/1,000,000) of an ISO 4217 currency: no floating point ever
//! touches an amount, so sums and reconciliations are exact.

use serde::{Deserialize, Serialize};

/// An amount of money: integer micro-units (1/1,000,000) of a currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// The amount in micro-units.
    pub micros: i64,
    /// The ISO 4217 currency code, e.g. `USD`.
    pub currency: String,
}

impl Money {
    /// An amount of `micros` micro-units of `currency`.
    pub fn new(micros: i64, currency: impl Into<String>) -> Self {
        Self {
            micros,
            currency: currency.into(),
        }
    }

    /// Whether `currency` looks like an ISO 4217 code: three ASCII capital letters.
    #[must_use]
    pub fn is_currency_code(currency: &str) -> bool {
        currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.micros < 0 { "-" } else { "" };
        let abs = self.micros.unsigned_abs();
        write!(
            f,
            "{sign}{}.{:06} {}",
            abs / 1_000_000,
            abs % 1_000_000,
            self.currency
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Amounts print exactly, with six decimals and their sign.
    #[test]
    fn displays_exact_micros() {
        assert_eq!(Money::new(8_300, "USD").to_string(), "0.008300 USD");
        assert_eq!(Money::new(-1_500_000, "EUR").to_string(), "-1.500000 EUR");
        assert_eq!(
            Money::new(i64::MIN, "USD").to_string(),
            "-9223372036854.775808 USD"
        );
    }

    /// Only three capital letters make a currency code.
    #[test]
    fn currency_codes() {
        assert!(Money::is_currency_code("USD"));
        for bad in ["usd", "US", "USDT", "", "U$D"] {
            assert!(!Money::is_currency_code(bad), "{bad}");
        }
    }
}
