//! Property test: whatever a provider plugin returns — huge strings, control characters, NUL,
//! negative or huge numbers, long lists — the host's handling of it (the output bounds, then
//! `classify` and the store's conversions) never panics and keeps only bounded values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald::config::DeliveryConfig;
use herald::pipeline::classify::{self, Attempt, Next};
use herald::pipeline::track;
use herald::plugin::bounds::{
    BODY_CHARS, DEFAULT_WEBHOOK_EVENTS, ID_BYTES, MAX_PRICE_MICROS, MAX_SEGMENTS, Sanitizer,
    TEXT_BYTES,
};
use herald::plugin::model::*;
use herald::plugin::redact::Redactor;
use herald::store::{self, EventSource, MessageLookup};
use proptest::prelude::*;

/// The secret the redactor knows; generated strings may contain it.
const SECRET: &str = "s3cr3t-K3y";

/// Plugin text: short arbitrary Unicode (control characters and NUL included), the secret
/// mixed in, or one character repeated up to 200,000 times.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        2 => "[\\x00-\\x1f\\u{7f}a-z\\u{e9}\\u{1F600}]{0,300}",
        1 => (any::<String>(), any::<String>()).prop_map(|(a, b)| format!("{a}{SECRET}{b}")),
        1 => (any::<char>(), 0usize..200_000).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ]
}

fn error() -> impl Strategy<Value = ProviderError> {
    (proptest::option::of(text()), text())
        .prop_map(|(code, message)| ProviderError { code, message })
}

fn money() -> impl Strategy<Value = Money> {
    (any::<i64>(), prop_oneof!["[A-Z]{3}", text()])
        .prop_map(|(micros, currency)| Money { micros, currency })
}

fn send_outcome() -> impl Strategy<Value = SendOutcome> {
    prop_oneof![
        (
            text(),
            text(),
            any::<Option<u32>>(),
            proptest::option::of(money()),
            proptest::option::of(text())
        )
            .prop_map(
                |(provider_message_id, provider_status, segments, price, sender)| {
                    SendOutcome::Accepted(Accepted {
                        provider_message_id,
                        provider_status,
                        segments,
                        price,
                        sender,
                    })
                }
            ),
        (error(), any::<Option<u64>>()).prop_map(|(error, retry_after_ms)| {
            SendOutcome::Retryable {
                error,
                retry_after_ms,
            }
        }),
        error().prop_map(SendOutcome::Refused),
        error().prop_map(SendOutcome::Unknown),
        error().prop_map(SendOutcome::OptedOut),
        error().prop_map(SendOutcome::InvalidRecipient),
    ]
}

fn state() -> impl Strategy<Value = DeliveryState> {
    prop_oneof![
        Just(DeliveryState::Queued),
        Just(DeliveryState::Sending),
        Just(DeliveryState::Sent),
        Just(DeliveryState::Delivered),
        Just(DeliveryState::Undelivered),
        Just(DeliveryState::Failed),
        Just(DeliveryState::Canceled),
        Just(DeliveryState::Read),
    ]
}

fn status_update() -> impl Strategy<Value = StatusUpdate> {
    (
        text(),
        state(),
        text(),
        proptest::option::of(error()),
        any::<Option<u32>>(),
        proptest::option::of(money()),
        proptest::option::of(text()),
    )
        .prop_map(
            |(provider_message_id, state, provider_status, error, segments, price, sender)| {
                StatusUpdate {
                    provider_message_id,
                    state,
                    provider_status,
                    error,
                    segments,
                    price,
                    sender,
                }
            },
        )
}

/// Webhook events; the list is long (up to 400) but its strings short, to keep cases fast.
fn events() -> impl Strategy<Value = Vec<WebhookEvent>> {
    let event = prop_oneof![
        status_update().prop_map(WebhookEvent::Status),
        (
            any::<String>(),
            any::<String>(),
            any::<String>(),
            text(),
            any::<Option<u32>>()
        )
            .prop_map(|(provider_message_id, from, to, body, segments)| {
                WebhookEvent::Inbound(InboundMessage {
                    provider_message_id,
                    from,
                    to,
                    body,
                    segments,
                })
            }),
    ];
    proptest::collection::vec(event, 0..400)
}

fn delivery() -> impl Strategy<Value = DeliveryConfig> {
    (any::<u64>(), any::<u64>(), any::<u64>(), 1u32..100).prop_map(|(base, max, age, attempts)| {
        DeliveryConfig {
            retry_base_ms: base,
            retry_max_ms: max,
            max_age_ms: age,
            max_attempts: attempts,
            ..DeliveryConfig::default()
        }
    })
}

fn attempt() -> impl Strategy<Value = Attempt> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<i64>(),
        any::<i64>(),
        0.0f64..=1.0,
    )
        .prop_map(|(number, max, created_at, now, jitter)| Attempt {
            number,
            max,
            created_at,
            now,
            jitter,
        })
}

fn assert_id(text: &str) {
    assert!(text.len() <= ID_BYTES, "{} bytes", text.len());
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(!text.contains(SECRET), "{text}");
}

fn assert_text(text: &str) {
    assert!(text.len() <= TEXT_BYTES, "{} bytes", text.len());
    assert!(!text.contains('\0'));
    assert!(!text.contains(SECRET), "{text}");
}

fn assert_money(price: &Option<herald::Money>) {
    if let Some(p) = price {
        assert!((0..=MAX_PRICE_MICROS).contains(&p.micros), "{p}");
        assert_eq!(p.currency.len(), 3);
    }
}

fn assert_segments(segments: Option<u32>) {
    assert!(segments.is_none_or(|s| (1..=MAX_SEGMENTS).contains(&s)));
}

fn assert_error(error: &store::ErrorInfo) {
    if let Some(code) = &error.code {
        assert_id(code);
    }
    if let Some(message) = &error.message {
        assert_text(message);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A send outcome, bounded then classified, becomes bounded store values; raw, it still
    /// classifies without panicking (every plugin number goes through checked arithmetic).
    #[test]
    fn any_send_outcome(outcome in send_outcome(), attempt in attempt(), delivery in delivery()) {
        let redactor = Redactor::new([SECRET.to_string()]);
        let sanitizer = Sanitizer::new("prop", &redactor, DEFAULT_WEBHOOK_EVENTS);
        let _ = classify::classify(outcome.clone(), "prop", attempt, &delivery);
        match classify::classify(sanitizer.send(outcome), "prop", attempt, &delivery) {
            Next::Sent(accepted) => {
                assert_id(&accepted.provider_message_id);
                assert_id(accepted.provider_status.as_deref().unwrap_or_default());
                assert_id(accepted.sender.as_deref().unwrap_or_default());
                assert_segments(accepted.segments);
                assert_money(&accepted.price);
            }
            Next::RetryAt { due_at, error } | Next::Defer { due_at, error } => {
                assert!(due_at >= attempt.now);
                assert_error(&error);
            }
            Next::FailOver(error) | Next::Stop { error, .. } => assert_error(&error),
        }
    }

    /// A provider's retry-after hint never delays a retry past `retry_max_ms` plus its jitter
    /// span, however large.
    #[test]
    fn retry_after_is_clamped(hint in any::<u64>(), attempt in 1u32..60, jitter in 0.0f64..=1.0, max in 1u64..10_000_000) {
        let delivery = DeliveryConfig { retry_base_ms: 100, retry_max_ms: max, ..DeliveryConfig::default() };
        let delay = classify::backoff(&delivery, attempt, Some(hint), jitter);
        assert!(delay <= max + (max / 10).max(2_000) + 1, "{delay} for a max of {max}");
    }

    /// A fetch-status answer and a webhook rejection are bounded too.
    #[test]
    fn any_fetch_and_rejection(update in status_update(), error in error(), hint in any::<Option<u64>>(), malformed in text()) {
        let redactor = Redactor::new([SECRET.to_string()]);
        let sanitizer = Sanitizer::new("prop", &redactor, DEFAULT_WEBHOOK_EVENTS);
        for outcome in [
            FetchOutcome::Status(update),
            FetchOutcome::Retryable { error: error.clone(), retry_after_ms: hint },
            FetchOutcome::Permanent(error),
        ] {
            match sanitizer.fetch(outcome) {
                FetchOutcome::Status(u) => {
                    assert_id(&u.provider_message_id);
                    assert_id(&u.provider_status);
                    assert_segments(u.segments);
                }
                FetchOutcome::Retryable { error, .. } | FetchOutcome::Permanent(error) => {
                    assert_id(error.code.as_deref().unwrap_or_default());
                    assert_text(&error.message);
                }
                FetchOutcome::Unsupported => {}
            }
        }
        match sanitizer.rejection(WebhookRejection::Malformed(malformed)) {
            WebhookRejection::Malformed(text) => assert_text(&text),
            other => panic!("{other:?}"),
        }
    }
}

proptest! {
    // Fewer cases: each carries up to 400 events, some with 200,000-character strings.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A webhook's events, bounded, are at most the cap, and each converts to bounded store
    /// values.
    #[test]
    fn any_webhook_events(events in events(), now in any::<i64>()) {
        let redactor = Redactor::new([SECRET.to_string()]);
        let sanitizer = Sanitizer::new("prop", &redactor, DEFAULT_WEBHOOK_EVENTS);
        let events = sanitizer.events(events);
        assert!(events.len() <= DEFAULT_WEBHOOK_EVENTS);
        for event in events {
            match event {
                WebhookEvent::Status(update) => {
                    let lookup = MessageLookup::Id("msg".into());
                    let stored = track::store_update(lookup, update, EventSource::Webhook, now);
                    assert_id(stored.provider_message_id.as_deref().unwrap_or_default());
                    assert_id(stored.provider_status.as_deref().unwrap_or_default());
                    assert_id(stored.sender.as_deref().unwrap_or_default());
                    assert_segments(stored.segments);
                    assert_money(&stored.price);
                    if let Some(error) = &stored.error {
                        assert_error(error);
                    }
                }
                WebhookEvent::Inbound(message) => {
                    assert_id(&message.provider_message_id);
                    assert_id(&message.from);
                    assert_id(&message.to);
                    assert!(message.body.chars().count() <= BODY_CHARS);
                    assert!(!message.body.contains('\0') && !message.body.contains(SECRET));
                    assert_segments(message.segments);
                }
            }
        }
    }
}
