//! Step 7, classify: a pure function from what the provider answered to what happens next.
//!
//! - *accepted* → the message is `sent`, with the sender the provider used when it names none;
//! - *retryable* → back to the queue at a time chosen by exponential backoff with jitter (or,
//!   after a provider's retry-after, that hint plus a random extra), while the next attempt
//!   would still fall within the message's age limit (`delivery.max_age_ms` after it was
//!   created) and attempts remain (`delivery.max_attempts`); then `failed`;
//! - *refused* → the provider definitely did not take it: safe to fail over to the next provider
//!   on the route, `failed` when there is none;
//! - *unknown* → the provider may have it: `unknown`, never failed over, never resent blindly;
//! - *opted out* at the provider → `failed`, and the number joins the opt-out list;
//! - *invalid recipient* → `failed`;
//! - *busy* (every instance the provider may use was taken; the plugin never ran) → deferred:
//!   back to the queue shortly, without counting the attempt, within the message's age limit.
//!
//! The plugin runtime has already turned a trap, a timeout or a limit hit into *retryable* (no
//! outbound request could have reached the server) or *unknown* (one may have).

use crate::config::DeliveryConfig;
use crate::domain::{MessageStatus, Money};
use crate::plugin::model::{ProviderError, SendOutcome};
use crate::store::{Accepted, ErrorInfo};

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The provider accepted the message.
    Sent(Accepted),
    /// Try again at `due_at` (UTC milliseconds).
    RetryAt {
        /// When the next attempt is due.
        due_at: i64,
        /// Why this attempt failed.
        error: ErrorInfo,
    },
    /// Nothing reached the provider: the next provider on the route may take it.
    FailOver(ErrorInfo),
    /// The provider had no instance free: try again at `due_at` without counting this attempt.
    Defer {
        /// When the next attempt is due.
        due_at: i64,
        /// Why the attempt did not happen.
        error: ErrorInfo,
    },
    /// No more attempts: the message ends with `status`.
    Stop {
        /// `failed` or `unknown`.
        status: MessageStatus,
        /// Why.
        error: ErrorInfo,
        /// The provider says the recipient opted out: add them to the opt-out list.
        opted_out: bool,
    },
}

/// Where an attempt stands: which one it was, when its message was created and when it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt {
    /// This attempt's number (1 for the first).
    pub number: u32,
    /// How many attempts the message may have.
    pub max: u32,
    /// When the message was created, or for a scheduled message its `send_at` (UTC
    /// milliseconds): its age limit counts from here.
    pub created_at: i64,
    /// When the attempt ended.
    pub now: i64,
    /// A factor in [0.5, 1] that spreads retries of many messages apart.
    pub jitter: f64,
}

/// The random extra added to a provider's retry-after hint is at most this share of the hint…
const HINT_JITTER_SHARE: f64 = 0.1;
/// …or at most this many milliseconds, whichever is larger, so short hints spread too.
const HINT_JITTER_MIN_SPAN_MS: u64 = 2_000;

/// Classifies `outcome` of `attempt` at `provider`.
#[must_use]
pub fn classify(
    outcome: SendOutcome,
    provider: &str,
    attempt: Attempt,
    delivery: &DeliveryConfig,
) -> Next {
    let stop = |status, error: &ProviderError, opted_out| Next::Stop {
        status,
        error: error_info(error),
        opted_out,
    };
    match outcome {
        SendOutcome::Accepted(accepted) => Next::Sent(Accepted {
            provider: provider.to_owned(),
            provider_message_id: accepted.provider_message_id,
            provider_status: Some(accepted.provider_status),
            segments: accepted.segments,
            price: accepted.price.map(|p| Money::new(p.micros, p.currency)),
            sender: accepted.sender,
        }),
        SendOutcome::Retryable {
            error,
            retry_after_ms,
        } => retry(error_info(&error), retry_after_ms, attempt, delivery),
        SendOutcome::Refused(error) => Next::FailOver(error_info(&error)),
        SendOutcome::InvalidRecipient(error) => stop(MessageStatus::Failed, &error, false),
        SendOutcome::Unknown(error) => stop(MessageStatus::Unknown, &error, false),
        SendOutcome::OptedOut(error) => stop(MessageStatus::Failed, &error, true),
        SendOutcome::Busy(error) => defer(error_info(&error), attempt, delivery),
    }
}

/// Puts an attempt that never ran back to the queue after a short, jittered delay (the first
/// backoff step), without counting it; past the message's age limit it stops the message.
#[must_use]
pub fn defer(error: ErrorInfo, attempt: Attempt, delivery: &DeliveryConfig) -> Next {
    let delay = backoff(delivery, 1, None, attempt.jitter);
    let due_at = attempt
        .now
        .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
    let deadline = attempt
        .created_at
        .saturating_add(i64::try_from(delivery.max_age_ms).unwrap_or(i64::MAX));
    if due_at > deadline {
        return Next::Stop {
            status: MessageStatus::Failed,
            error,
            opted_out: false,
        };
    }
    Next::Defer { due_at, error }
}

/// Retries `error` after a backoff, or stops when the attempts are used up or the next attempt
/// would fall after the message's age limit (`created_at + delivery.max_age_ms`).
#[must_use]
pub fn retry(
    error: ErrorInfo,
    retry_after_ms: Option<u64>,
    attempt: Attempt,
    delivery: &DeliveryConfig,
) -> Next {
    let delay = backoff(delivery, attempt.number, retry_after_ms, attempt.jitter);
    let due_at = attempt
        .now
        .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
    let deadline = attempt
        .created_at
        .saturating_add(i64::try_from(delivery.max_age_ms).unwrap_or(i64::MAX));
    if attempt.number >= attempt.max || due_at > deadline {
        return Next::Stop {
            status: MessageStatus::Failed,
            error,
            opted_out: false,
        };
    }
    Next::RetryAt { due_at, error }
}

/// The delay before the next attempt, in milliseconds: exponential backoff, base·2^(attempt−1)
/// capped at `retry_max_ms` and scaled by `jitter`; or, when the provider gave a retry-after
/// hint that is longer, the hint (clamped to `retry_max_ms`: the hint is the plugin's word, and
/// `u64::MAX` must not park a message for ever) plus a random extra of up to 10% of it or 2 s,
/// whichever is larger, so that the messages a rate limit turned away do not all come back at
/// the same instant.
#[must_use]
pub fn backoff(
    delivery: &DeliveryConfig,
    attempt: u32,
    retry_after_ms: Option<u64>,
    jitter: f64,
) -> u64 {
    let jitter = jitter.clamp(0.5, 1.0);
    let exp = delivery
        .retry_base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
    let capped = exp.min(delivery.retry_max_ms);
    let jittered = (capped as f64 * jitter) as u64;
    let hint = retry_after_ms
        .unwrap_or(0)
        .min(delivery.retry_max_ms.max(1));
    if hint == 0 {
        return jittered;
    }
    // `jitter` spans [0.5, 1]; stretched to [0, 1] it picks the extra. At least 1 ms, so a
    // retry never lands exactly on the hint.
    let span = ((hint as f64 * HINT_JITTER_SHARE) as u64).max(HINT_JITTER_MIN_SPAN_MS);
    let extra = ((span as f64 * (jitter - 0.5) * 2.0).ceil() as u64).max(1);
    jittered.max(hint.saturating_add(extra))
}

fn error_info(error: &ProviderError) -> ErrorInfo {
    ErrorInfo {
        code: error.code.clone(),
        message: Some(error.message.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::model;

    fn delivery() -> DeliveryConfig {
        DeliveryConfig {
            retry_base_ms: 100,
            retry_max_ms: 1_000,
            ..Default::default()
        }
    }

    fn attempt(number: u32) -> Attempt {
        Attempt {
            number,
            max: 5,
            created_at: 9_000,
            now: 10_000,
            jitter: 1.0,
        }
    }

    fn retryable_error() -> ErrorInfo {
        error_info(&error())
    }

    fn error() -> ProviderError {
        ProviderError {
            code: Some("E1".into()),
            message: "nope".into(),
        }
    }

    /// Backoff doubles per attempt, is capped, scales by jitter and honours retry-after.
    #[test]
    fn backoff_grows_and_is_capped() {
        let config = delivery();
        assert_eq!(backoff(&config, 1, None, 1.0), 100);
        assert_eq!(backoff(&config, 3, None, 1.0), 400);
        assert_eq!(backoff(&config, 3, None, 0.5), 200);
        assert_eq!(backoff(&config, 40, None, 1.0), 1_000);
        // A hint of 0.7 s: the extra spans up to 2 s (10% of 0.7 s is less).
        assert_eq!(backoff(&config, 1, Some(700), 1.0), 2_700);
        assert_eq!(backoff(&config, 1, Some(700), 0.75), 1_700);
        // An absurd hint is clamped to the longest backoff before the extra is added.
        assert_eq!(backoff(&config, 1, Some(u64::MAX), 1.0), 3_000);
        // A zero hint is no hint.
        assert_eq!(backoff(&config, 1, Some(0), 1.0), 100);
    }

    /// A retry after a provider's hint never lands exactly on it, and the extra grows with long
    /// hints (up to 10% of the hint) but stays within its span.
    #[test]
    fn retry_after_gets_jitter_on_top() {
        let config = DeliveryConfig::default();
        for jitter in [0.5, 0.5 + f64::EPSILON, 0.6, 0.75, 0.9, 1.0] {
            let delay = backoff(&config, 1, Some(1_000), jitter);
            assert!((1_001..=3_000).contains(&delay), "{jitter}: {delay}");
            let long = backoff(&config, 1, Some(200_000), jitter);
            assert!((200_001..=220_000).contains(&long), "{jitter}: {long}");
        }
        // Different draws spread the retries apart.
        assert_ne!(
            backoff(&config, 1, Some(1_000), 0.6),
            backoff(&config, 1, Some(1_000), 0.9)
        );
    }

    /// The defaults keep a message retrying through an outage of minutes: backoff capped at
    /// 5 minutes, an hour of age, and attempts that outlast that hour even at the shortest
    /// jitter.
    #[test]
    fn defaults_survive_a_long_outage() {
        let config = DeliveryConfig::default();
        assert_eq!(config.retry_max_ms, 300_000);
        assert_eq!(config.max_age_ms, 3_600_000);
        assert_eq!(config.max_attempts, 50);
        assert_eq!(backoff(&config, 20, None, 1.0), 300_000);
        // With every delay at its shortest (jitter 0.5), 49 retries take more than an hour.
        let shortest: u64 = (1..config.max_attempts)
            .map(|n| backoff(&config, n, None, 0.5))
            .sum();
        assert!(shortest > config.max_age_ms, "{shortest}");
    }

    /// A retry is scheduled while it falls within the message's age limit; one that would fall
    /// after it stops the message, as does the last allowed attempt.
    #[test]
    fn age_limit_and_attempts_bound_retries() {
        let config = DeliveryConfig {
            retry_base_ms: 1_000,
            retry_max_ms: 60_000,
            max_age_ms: 600_000,
            ..Default::default()
        };
        let at = |number: u32, now: i64| Attempt {
            number,
            max: 50,
            created_at: 0,
            now,
            jitter: 1.0,
        };
        // Attempt 10 waits 60 s: from 539 s it is due at 599 s, inside the 600 s limit.
        assert_eq!(
            retry(retryable_error(), None, at(10, 539_000), &config),
            Next::RetryAt {
                due_at: 599_000,
                error: retryable_error()
            }
        );
        // Exactly on the limit is still inside it.
        assert!(matches!(
            retry(retryable_error(), None, at(10, 540_000), &config),
            Next::RetryAt {
                due_at: 600_000,
                ..
            }
        ));
        // One millisecond later the retry would fall after it: failed.
        assert!(matches!(
            retry(retryable_error(), None, at(10, 540_001), &config),
            Next::Stop {
                status: MessageStatus::Failed,
                ..
            }
        ));
        // A provider's hint that reaches past the limit stops it too (clamped to 60 s, it
        // still does from 550 s).
        assert!(matches!(
            retry(retryable_error(), Some(120_000), at(2, 550_000), &config),
            Next::Stop { .. }
        ));
        // Attempts still bound it, however young the message.
        let last = Attempt {
            max: 3,
            ..at(3, 1_000)
        };
        assert!(matches!(
            retry(retryable_error(), None, last, &config),
            Next::Stop { .. }
        ));
    }

    /// A busy provider defers the message, even on its last attempt, but not past its age limit.
    #[test]
    fn busy_defers_without_using_up_attempts() {
        let config = delivery();
        assert_eq!(
            classify(SendOutcome::Busy(error()), "p", attempt(5), &config),
            Next::Defer {
                due_at: 10_100,
                error: error_info(&error())
            }
        );
        let old = Attempt {
            created_at: 10_000 - config.max_age_ms as i64,
            ..attempt(1)
        };
        assert!(matches!(
            classify(SendOutcome::Busy(error()), "p", old, &config),
            Next::Stop { .. }
        ));
    }

    /// Each outcome leads where the module documentation says.
    #[test]
    fn outcomes_lead_to_their_next_step() {
        let config = delivery();
        let accepted = SendOutcome::Accepted(model::Accepted {
            provider_message_id: "SM1".into(),
            provider_status: "queued".into(),
            segments: Some(1),
            price: None,
            sender: Some("+15005550006".into()),
        });
        assert!(matches!(
            classify(accepted, "twilio", attempt(1), &config),
            Next::Sent(Accepted { ref provider, ref sender, .. })
                if provider == "twilio" && sender.as_deref() == Some("+15005550006")
        ));
        let retryable = || SendOutcome::Retryable {
            error: error(),
            retry_after_ms: None,
        };
        assert_eq!(
            classify(retryable(), "p", attempt(2), &config),
            Next::RetryAt {
                due_at: 10_200,
                error: error_info(&error())
            }
        );
        assert!(matches!(
            classify(retryable(), "p", attempt(5), &config),
            Next::Stop {
                status: MessageStatus::Failed,
                opted_out: false,
                ..
            }
        ));
        assert!(matches!(
            classify(SendOutcome::Refused(error()), "p", attempt(1), &config),
            Next::FailOver(_)
        ));
        assert!(matches!(
            classify(SendOutcome::Unknown(error()), "p", attempt(1), &config),
            Next::Stop {
                status: MessageStatus::Unknown,
                opted_out: false,
                ..
            }
        ));
        assert!(matches!(
            classify(SendOutcome::OptedOut(error()), "p", attempt(1), &config),
            Next::Stop {
                status: MessageStatus::Failed,
                opted_out: true,
                ..
            }
        ));
        assert!(matches!(
            classify(
                SendOutcome::InvalidRecipient(error()),
                "p",
                attempt(1),
                &config
            ),
            Next::Stop {
                status: MessageStatus::Failed,
                opted_out: false,
                ..
            }
        ));
    }
}
