//! The price table: what one segment costs per provider, destination country and encoding, in
//! integer micro-units of a currency. The operator's table is `[pricing]` in the config; a
//! tenant's own table (its settings' `pricing`) overrides it.
//!
//! Lookup is pure: [`PriceTable::lookup`] picks the most specific entry that fits a message
//! (an exact country beats `*`, an exact encoding beats none). A tenant's table is searched first
//! and wins whenever one of its entries fits; only then is the operator's searched. Where neither
//! fits, [`super::ledger`] falls back to the running average of actual prices.

use serde::{Deserialize, Serialize};

use crate::domain::Money;
use crate::plugin::bounds::MAX_PRICE_MICROS;
use crate::segments::Encoding;

/// The country of a `*` entry: any destination of its provider.
pub const ANY_COUNTRY: &str = "*";

/// A price table: the operator's `[pricing]`, or a tenant's `pricing` setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriceTable {
    /// The entries; the most specific one that fits a message wins.
    pub prices: Vec<PriceEntry>,
}

impl Default for PriceTable {
    /// Twilio's price to the US and Canada (0.0083 USD per segment): examples to override with
    /// the operator's own contract prices.
    fn default() -> Self {
        let twilio = |country: &str| PriceEntry {
            provider: "twilio".into(),
            country: country.into(),
            encoding: None,
            micros_per_segment: 8_300,
            currency: "USD".into(),
        };
        Self {
            prices: vec![twilio("US"), twilio("CA")],
        }
    }
}

/// One price: `micros_per_segment` of `currency` per segment sent through `provider` to
/// `country` (ISO 3166 alpha-2, or `*`), optionally only for one `encoding`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// The provider plugin's name, as routed (`twilio`).
    pub provider: String,
    /// The destination country (`US`), or `*` for the provider's default.
    pub country: String,
    /// `GSM-7` or `UCS-2`; absent for both.
    #[serde(default)]
    pub encoding: Option<String>,
    /// The price of one segment, in micro-units.
    pub micros_per_segment: i64,
    /// The ISO 4217 currency of the price.
    pub currency: String,
}

/// Where an estimate's price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    /// The tenant's own price table.
    Tenant,
    /// The operator's `[pricing]`.
    Config,
    /// The running average of actual prices seen for the provider and country.
    Average,
}

impl PriceSource {
    /// The name stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Config => "config",
            Self::Average => "average",
        }
    }
}

impl PriceTable {
    /// Checks every entry: a non-empty provider, a country of two capital letters or `*`, a known
    /// encoding, a price that is not negative and an ISO 4217 currency code. Returns what is wrong.
    pub fn check(&self) -> Result<(), String> {
        for (i, entry) in self.prices.iter().enumerate() {
            let at = format!("prices[{i}]");
            if entry.provider.is_empty() || entry.provider.len() > 64 {
                return Err(format!("{at}.provider must be 1 to 64 characters"));
            }
            let country_ok = entry.country == ANY_COUNTRY
                || (entry.country.len() == 2
                    && entry.country.bytes().all(|b| b.is_ascii_uppercase()));
            if !country_ok {
                return Err(format!(
                    "{at}.country must be an ISO 3166 alpha-2 code (`US`) or `*`"
                ));
            }
            if let Some(encoding) = &entry.encoding
                && parse_encoding(encoding).is_none()
            {
                return Err(format!("{at}.encoding must be `GSM-7` or `UCS-2`"));
            }
            // The bound a provider's own reported price has: an estimate can never be an amount
            // no provider could charge, and sums of them stay far inside 64 bits.
            if !(0..=MAX_PRICE_MICROS).contains(&entry.micros_per_segment) {
                return Err(format!(
                    "{at}.micros_per_segment must be from 0 to {MAX_PRICE_MICROS}"
                ));
            }
            if !Money::is_currency_code(&entry.currency) {
                return Err(format!(
                    "{at}.currency must be an ISO 4217 code of three capital letters (`USD`)"
                ));
            }
        }
        Ok(())
    }

    /// The most specific entry for `provider`, `country` and `encoding`, if any fits.
    #[must_use]
    pub fn lookup(
        &self,
        provider: &str,
        country: Option<&str>,
        encoding: Encoding,
    ) -> Option<&PriceEntry> {
        self.prices
            .iter()
            .filter_map(|entry| {
                if entry.provider != provider {
                    return None;
                }
                let country_rank = if entry.country == ANY_COUNTRY {
                    0
                } else if Some(entry.country.as_str()) == country {
                    2
                } else {
                    return None;
                };
                let encoding_rank = match entry.encoding.as_deref().map(parse_encoding) {
                    None => 0,
                    Some(Some(e)) if e == encoding => 1,
                    Some(_) => return None,
                };
                Some((country_rank + encoding_rank, entry))
            })
            // `max_by_key` keeps the last of equals; `rev` makes the first listed win a tie.
            .rev()
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, entry)| entry)
    }
}

/// The price of one segment for a message, from the tenant's table, else the operator's.
#[must_use]
pub fn price(
    tenant: Option<&PriceTable>,
    operator: &PriceTable,
    provider: &str,
    country: Option<&str>,
    encoding: Encoding,
) -> Option<(Money, PriceSource)> {
    let found = |table: &PriceTable, source| {
        table
            .lookup(provider, country, encoding)
            .map(|e| (Money::new(e.micros_per_segment, e.currency.clone()), source))
    };
    tenant
        .and_then(|table| found(table, PriceSource::Tenant))
        .or_else(|| found(operator, PriceSource::Config))
}

fn parse_encoding(name: &str) -> Option<Encoding> {
    [Encoding::Gsm7, Encoding::Ucs2]
        .into_iter()
        .find(|e| e.as_str().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(provider: &str, country: &str, encoding: Option<&str>, micros: i64) -> PriceEntry {
        PriceEntry {
            provider: provider.into(),
            country: country.into(),
            encoding: encoding.map(Into::into),
            micros_per_segment: micros,
            currency: "USD".into(),
        }
    }

    /// An exact country beats `*`, an exact encoding beats none, other providers never match.
    #[test]
    fn most_specific_entry_wins() {
        let table = PriceTable {
            prices: vec![
                entry("twilio", "*", None, 1),
                entry("twilio", "US", None, 2),
                entry("twilio", "US", Some("UCS-2"), 3),
                entry("other", "GB", None, 4),
            ],
        };
        let micros = |country, encoding| {
            table
                .lookup("twilio", country, encoding)
                .map(|e| e.micros_per_segment)
        };
        assert_eq!(micros(Some("US"), Encoding::Gsm7), Some(2));
        assert_eq!(micros(Some("US"), Encoding::Ucs2), Some(3));
        assert_eq!(micros(Some("GB"), Encoding::Gsm7), Some(1));
        assert_eq!(micros(None, Encoding::Gsm7), Some(1));
        assert!(table.lookup("nobody", Some("US"), Encoding::Gsm7).is_none());
    }

    /// A tenant's fitting entry overrides the operator's; otherwise the operator's applies.
    #[test]
    fn tenant_table_overrides() {
        let operator = PriceTable::default();
        let tenant = PriceTable {
            prices: vec![entry("twilio", "*", None, 5_000)],
        };
        let (money, source) = price(
            Some(&tenant),
            &operator,
            "twilio",
            Some("US"),
            Encoding::Gsm7,
        )
        .unwrap();
        assert_eq!((money.micros, source), (5_000, PriceSource::Tenant));
        let (money, source) = price(None, &operator, "twilio", Some("CA"), Encoding::Gsm7).unwrap();
        assert_eq!((money.micros, source), (8_300, PriceSource::Config));
        assert!(price(None, &operator, "twilio", Some("GB"), Encoding::Gsm7).is_none());
    }

    /// Bad countries, encodings, negative or impossible prices and currencies are named.
    #[test]
    fn check_names_the_problem() {
        assert!(PriceTable::default().check().is_ok());
        for (bad, word) in [
            (entry("twilio", "usa", None, 1), "country"),
            (entry("twilio", "US", Some("latin1"), 1), "encoding"),
            (entry("twilio", "US", None, -1), "micros_per_segment"),
            (
                entry("twilio", "US", None, MAX_PRICE_MICROS + 1),
                "micros_per_segment",
            ),
            (
                PriceEntry {
                    currency: "usd".into(),
                    ..entry("twilio", "US", None, 1)
                },
                "currency",
            ),
        ] {
            let table = PriceTable { prices: vec![bad] };
            assert!(table.check().unwrap_err().contains(word));
        }
    }
}
