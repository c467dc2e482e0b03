//! The dispatcher: claims due queue entries, re-checks opt-out, calls the provider plugin and
//! records the classified outcome.
//!
//! Each claim holds a lease; every outcome is fenced by it, so an attempt whose lease expired
//! (a stalled or killed process) can never overwrite the attempt that reclaimed the entry. A
//! process killed mid-dispatch loses nothing: its leases expire and another worker (or the same
//! process after a restart) takes the entries again. Such a resend is the one case where a
//! provider may see a message twice; the host message id travels with every attempt so
//! providers that deduplicate can.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::app::AppState;
use crate::plugin::model::{self as plugin_model, OutboundMessage, SendOutcome};
use crate::store::{self, ClaimedJob, ErrorInfo, LeaseOutcome, MessageStatus, now_millis};

/// The category of keyword confirmations, which skip the opt-out check.
pub const COMPLIANCE_CATEGORY: &str = "compliance";

/// How long an idle worker waits before looking at the queue again without a wake-up.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Runs the dispatch loop until `shutdown` becomes true, then waits for calls in flight.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let workers = state.config.delivery.workers.max(1);
    let permits = Arc::new(Semaphore::new(workers));
    let worker_id = format!("{}-{}", hostname(), std::process::id());
    let lease = Duration::from_millis(state.config.delivery.lease_ms);
    let mut in_flight = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        while in_flight.try_join_next().is_some() {}
        let free = permits.available_permits() as u32;
        if free == 0 {
            // Wait for a slot, but stay responsive to shutdown.
            tokio::select! {
                _ = in_flight.join_next() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let jobs = match state
            .store
            .claim(&worker_id, now_millis(), lease, free)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %e, "claiming from the queue failed; retrying shortly");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        if jobs.is_empty() {
            let wait = match state.store.next_due_at().await {
                Ok(Some(due)) => Duration::from_millis(
                    (due - now_millis()).clamp(1, IDLE_POLL.as_millis() as i64) as u64,
                ),
                _ => IDLE_POLL,
            };
            tokio::select! {
                _ = state.store.wait_for_work(wait) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for job in jobs {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let state = state.clone();
            in_flight.spawn(async move {
                attempt(&state, job).await;
                drop(permit);
            });
        }
    }
    // Graceful shutdown: no new claims; calls in flight finish and record their outcome.
    while in_flight.join_next().await.is_some() {}
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald".into())
}

/// Makes one delivery attempt for a claimed job and records its outcome.
pub async fn attempt(state: &AppState, job: ClaimedJob) {
    let message = &job.message;
    let lease = job.lease();
    let now = now_millis();
    if job.interrupted {
        tracing::warn!(message_id = %message.id, attempt = job.attempt, "previous attempt was interrupted; sending again");
    }
    if message.category != COMPLIANCE_CATEGORY {
        match state
            .store
            .is_opted_out(&message.tenant_id, &message.to_number, &message.category)
            .await
        {
            Ok(false) => {}
            Ok(true) => {
                let error = ErrorInfo {
                    code: Some("recipient_opted_out".into()),
                    message: Some("the recipient opted out after the message was accepted".into()),
                };
                record(
                    state
                        .store
                        .finish(lease, MessageStatus::Failed, &error, now)
                        .await,
                    &message.id,
                );
                return;
            }
            Err(e) => {
                tracing::error!(message_id = %message.id, error = %e, "opt-out check failed; retrying later");
                let error = ErrorInfo {
                    code: Some("store_unavailable".into()),
                    message: Some(e.to_string()),
                };
                record(
                    state
                        .store
                        .reschedule(lease, now + 5_000, &error, now)
                        .await,
                    &message.id,
                );
                return;
            }
        }
    }
    // Keyword confirmations answer through the provider the keyword came in on.
    let routed = if message.category == COMPLIANCE_CATEGORY {
        state.plugins.get(&message.provider).ok_or_else(|| {
            crate::plugin::PluginError::NotAvailable(format!(
                "no provider plugin `{}` is loaded",
                message.provider
            ))
        })
    } else {
        state.plugins.provider()
    };
    let provider = match routed {
        Ok(p) => p,
        Err(e) => {
            let error = ErrorInfo {
                code: Some("provider_unavailable".into()),
                message: Some(e.to_string()),
            };
            retry_or_fail(state, &job, &error, None).await;
            return;
        }
    };
    let outbound = OutboundMessage {
        message_id: message.id.clone(),
        to: message.to_number.clone(),
        sender: message.sender.clone().map(plugin_model::Sender::From),
        body: message.body.clone(),
        encoding: match message.encoding {
            crate::segments::Encoding::Gsm7 => plugin_model::Encoding::Gsm7,
            crate::segments::Encoding::Ucs2 => plugin_model::Encoding::Ucs2,
        },
        segments: message.segments,
        status_callback: Some(status_callback_url(
            &state.config.server.public_url,
            provider.name(),
            &message.id,
        )),
        attempt: job.attempt,
    };
    let outcome = provider.send(&outbound).await;
    let now = now_millis();
    let as_error = |e: &plugin_model::ProviderError| ErrorInfo {
        code: e.code.clone(),
        message: Some(e.message.clone()),
    };
    match outcome {
        SendOutcome::Accepted(a) => {
            let accepted = store::Accepted {
                provider: provider.name().to_string(),
                provider_message_id: a.provider_message_id,
                provider_status: Some(a.provider_status),
                segments: a.segments,
                price: a.price.map(|p| store::Money {
                    micros: p.micros,
                    currency: p.currency,
                }),
            };
            record(
                state.store.complete_accepted(lease, &accepted, now).await,
                &message.id,
            );
        }
        SendOutcome::Retryable {
            error,
            retry_after_ms,
        } => {
            retry_or_fail(state, &job, &as_error(&error), retry_after_ms).await;
        }
        SendOutcome::Refused(error) | SendOutcome::InvalidRecipient(error) => {
            finish(state, &job, MessageStatus::Failed, &as_error(&error)).await;
        }
        SendOutcome::Unknown(error) => {
            // The provider may have the message: resending could deliver it twice.
            finish(state, &job, MessageStatus::Unknown, &as_error(&error)).await;
        }
        SendOutcome::OptedOut(error) => {
            let reason = format!(
                "provider reported opt-out ({})",
                error.code.as_deref().unwrap_or("no code")
            );
            if let Err(e) = state
                .store
                .opt_out(
                    &message.tenant_id,
                    &message.to_number,
                    store::ALL_CATEGORIES,
                    "provider",
                    Some(&reason),
                    now,
                )
                .await
            {
                tracing::error!(message_id = %message.id, error = %e, "could not record the provider's opt-out");
            }
            finish(state, &job, MessageStatus::Failed, &as_error(&error)).await;
        }
    }
}

/// Ends the job's attempts with a final `status`.
async fn finish(state: &AppState, job: &ClaimedJob, status: MessageStatus, error: &ErrorInfo) {
    let result = state
        .store
        .finish(job.lease(), status, error, now_millis())
        .await;
    record(result, &job.message.id);
}

async fn retry_or_fail(
    state: &AppState,
    job: &ClaimedJob,
    error: &ErrorInfo,
    retry_after_ms: Option<u64>,
) {
    let now = now_millis();
    let lease = job.lease();
    if job.attempt >= job.message.max_attempts {
        finish(state, job, MessageStatus::Failed, error).await;
        return;
    }
    let delay = backoff(&state.config.delivery, job.attempt, retry_after_ms);
    record(
        state
            .store
            .reschedule(lease, now + delay.as_millis() as i64, error, now)
            .await,
        &job.message.id,
    );
}

/// Exponential backoff with jitter: base·2^(attempt−1), capped, scaled by a random factor in
/// [0.5, 1] so retries of many messages spread out; never shorter than the provider's hint.
pub fn backoff(
    config: &crate::config::DeliveryConfig,
    attempt: u32,
    retry_after_ms: Option<u64>,
) -> Duration {
    let exp = config
        .retry_base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
    let capped = exp.min(config.retry_max_ms);
    let jittered = (capped as f64 * rand::rng().random_range(0.5..=1.0)) as u64;
    Duration::from_millis(jittered.max(retry_after_ms.unwrap_or(0)))
}

fn record(result: store::Result<LeaseOutcome>, message_id: &str) {
    match result {
        Ok(LeaseOutcome::Applied) => {}
        Ok(LeaseOutcome::Lost) => {
            tracing::warn!(%message_id, "lease lost before the outcome was recorded; another attempt owns it")
        }
        Err(e) => {
            tracing::error!(%message_id, error = %e, "could not record the attempt's outcome; the lease will expire and it will be retried")
        }
    }
}

/// The status-callback URL for a message: the provider's webhook, with the message id so the
/// callback finds its message even before the provider's id is recorded.
pub fn status_callback_url(public_url: &str, provider: &str, message_id: &str) -> String {
    format!(
        "{}/api/v1/sms/webhooks/{provider}/status?message_id={message_id}",
        public_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backoff doubles per attempt within the jitter band, is capped, and honours retry-after.
    #[test]
    fn backoff_grows_and_is_capped() {
        let config = crate::config::DeliveryConfig {
            retry_base_ms: 100,
            retry_max_ms: 1_000,
            ..Default::default()
        };
        for _ in 0..50 {
            let first = backoff(&config, 1, None).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let third = backoff(&config, 3, None).as_millis();
            assert!((200..=400).contains(&third), "{third}");
            let late = backoff(&config, 40, None).as_millis();
            assert!((500..=1_000).contains(&late), "{late}");
            assert_eq!(backoff(&config, 1, Some(7_000)).as_millis(), 7_000);
        }
    }
}
