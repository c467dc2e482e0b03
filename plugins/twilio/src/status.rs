//! Twilio's message status words and what each means to the host, shared by status callbacks and
//! `fetch-status`.
//!
//! Every value of Twilio's `MessageStatus` (OpenAPI `message_enum_status`) has a meaning here:
//!
//! | Twilio | host |
//! |---|---|
//! | `accepted`, `scheduled`, `queued` | queued (Twilio has it, no carrier yet) |
//! | `sending` | sending |
//! | `sent` | sent |
//! | `delivered` | delivered (final) |
//! | `undelivered` | undelivered (final) |
//! | `partially_delivered` | undelivered (final), with an error saying so |
//! | `failed` | failed (final) |
//! | `canceled` | canceled (final) |
//! | `read` | read (final) |
//! | `receiving`, `received` | an inbound message, not a state of an outbound one |
//!
//! `partially_delivered` is final at Twilio but means the recipient did not get the message
//! whole; reporting it as delivered would tell a caller that a code or a notice arrived when part
//! of it did not, so it counts as undelivered and keeps Twilio's word beside it.

use crate::bindings::exports::herald::plugin::provider_api::{DeliveryState, ProviderError};

/// What one of Twilio's status words says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// A state of an outbound message.
    Outbound(DeliveryState),
    /// The word belongs to an inbound message (`receiving`, `received`).
    Inbound,
}

/// The meaning of Twilio's status `word`; `None` for a word Twilio does not document.
pub fn meaning(word: &str) -> Option<Meaning> {
    Some(Meaning::Outbound(match word {
        "accepted" | "scheduled" | "queued" => DeliveryState::Queued,
        "sending" => DeliveryState::Sending,
        "sent" => DeliveryState::Sent,
        "delivered" => DeliveryState::Delivered,
        "undelivered" | "partially_delivered" => DeliveryState::Undelivered,
        "failed" => DeliveryState::Failed,
        "canceled" => DeliveryState::Canceled,
        "read" => DeliveryState::Read,
        "receiving" | "received" => return Some(Meaning::Inbound),
        _ => return None,
    }))
}

/// The error a status word implies when Twilio sent no error code with it.
pub fn implied_error(word: &str) -> Option<ProviderError> {
    (word == "partially_delivered").then(|| ProviderError {
        code: None,
        message: "Twilio reported the message partially delivered: the recipient did not get it \
                  whole"
            .to_string(),
    })
}

/// A short description of the error codes Twilio reports for failed and undelivered messages,
/// for when it sends a code without a message.
pub fn describe_code(code: &str) -> String {
    let text = match code {
        "30001" => "queue overflow",
        "30002" => "account suspended",
        "30003" => "unreachable destination handset",
        "30004" => "message blocked",
        "30005" => "unknown destination handset",
        "30006" => "landline or unreachable carrier",
        "30007" => "message filtered by the carrier",
        "30008" => "unknown error",
        "30032" => "toll-free number not verified",
        "30034" => "message from an unregistered A2P 10DLC number",
        _ => return format!("Twilio error {code}"),
    };
    format!("Twilio error {code}: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status in Twilio's OpenAPI enum, in its order, with the meaning the table gives it.
    const EVERY_STATUS: [(&str, Meaning); 13] = [
        ("queued", Meaning::Outbound(DeliveryState::Queued)),
        ("sending", Meaning::Outbound(DeliveryState::Sending)),
        ("sent", Meaning::Outbound(DeliveryState::Sent)),
        ("failed", Meaning::Outbound(DeliveryState::Failed)),
        ("delivered", Meaning::Outbound(DeliveryState::Delivered)),
        ("undelivered", Meaning::Outbound(DeliveryState::Undelivered)),
        ("receiving", Meaning::Inbound),
        ("received", Meaning::Inbound),
        ("accepted", Meaning::Outbound(DeliveryState::Queued)),
        ("scheduled", Meaning::Outbound(DeliveryState::Queued)),
        ("read", Meaning::Outbound(DeliveryState::Read)),
        (
            "partially_delivered",
            Meaning::Outbound(DeliveryState::Undelivered),
        ),
        ("canceled", Meaning::Outbound(DeliveryState::Canceled)),
    ];

    /// Each documented status word has its meaning; anything else has none.
    #[test]
    fn every_documented_status_has_a_meaning() {
        for (word, expected) in EVERY_STATUS {
            assert_eq!(meaning(word), Some(expected), "{word}");
        }
        for word in [
            "",
            "Delivered",
            "exploded",
            "unknown",
            "partially-delivered",
        ] {
            assert_eq!(meaning(word), None, "{word}");
        }
    }

    /// Only partial delivery implies an error of its own.
    #[test]
    fn partial_delivery_implies_an_error() {
        let error = implied_error("partially_delivered").map(|e| (e.code, e.message));
        assert!(matches!(error, Some((None, ref m)) if m.contains("partially delivered")));
        for (word, _) in EVERY_STATUS {
            if word != "partially_delivered" {
                assert!(implied_error(word).is_none(), "{word}");
            }
        }
    }

    /// Known codes are described, unknown ones named.
    #[test]
    fn codes_are_described() {
        assert_eq!(
            describe_code("30003"),
            "Twilio error 30003: unreachable destination handset"
        );
        assert_eq!(describe_code("12345"), "Twilio error 12345");
    }
}
