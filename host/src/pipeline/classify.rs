//! Step 7, classify: a pure function from what the provider answered to what happens next.
//!
//! - *accepted* → the message is `sent`, with the sender the provider used when it names none;
//! - *retryable* → back to the queue at a time chosen by exponential backoff with jitter (never
//!   sooner than the provider's retry-after), until the attempts run out, then `failed`;
//! - *refused* → the provider definitely did not take it: safe to fail over to the next provider
//!   on the route, `failed` when there is none;
//! - *unknown* → the provider may have it: `unknown`, never failed over, never resent blindly;
//! - *opted out* at the provider → `failed`, and the number joins the opt-out list;
//! - *invalid recipient* → `failed`.
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

/// Where an attempt stands: which one it was, and when it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt {
    /// This attempt's number (1 for the first).
    pub number: u32,
    /// How many attempts the message may have.
    pub max: u32,
    /// When the attempt ended.
    pub now: i64,
    /// A factor in [0.5, 1] that spreads retries of many messages apart.
    pub jitter: f64,
}

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
    }
}

/// Retries `error` after a backoff, or stops when the attempts are used up.
#[must_use]
pub fn retry(
    error: ErrorInfo,
    retry_after_ms: Option<u64>,
    attempt: Attempt,
    delivery: &DeliveryConfig,
) -> Next {
    if attempt.number >= attempt.max {
        return Next::Stop {
            status: MessageStatus::Failed,
            error,
            opted_out: false,
        };
    }
    let delay = backoff(delivery, attempt.number, retry_after_ms, attempt.jitter);
    Next::RetryAt {
        due_at: attempt
            .now
            .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)),
        error,
    }
}

/// Exponential backoff in milliseconds: base·2^(attempt−1), capped at `retry_max_ms`, scaled
/// by `jitter`; never shorter than the provider's hint, which is itself capped.
#[must_use]
pub fn backoff(
    delivery: &DeliveryConfig,
    attempt: u32,
    retry_after_ms: Option<u64>,
    jitter: f64,
) -> u64 {
    let exp = delivery
        .retry_base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
    let capped = exp.min(delivery.retry_max_ms);
    let jittered = (capped as f64 * jitter.clamp(0.0, 1.0)) as u64;
    let hint = retry_after_ms
        .unwrap_or(0)
        .min(delivery.retry_max_ms.max(1) * 10);
    jittered.max(hint)
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
            now: 10_000,
            jitter: 1.0,
        }
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
        assert_eq!(backoff(&config, 1, Some(7_000), 1.0), 7_000);
        // An absurd hint is capped at ten times the longest backoff.
        assert_eq!(backoff(&config, 1, Some(u64::MAX), 1.0), 10_000);
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
