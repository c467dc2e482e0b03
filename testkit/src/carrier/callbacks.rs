//! The background lifecycle of an outbound message, with signed status callbacks.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::CarrierError;
use super::billing::{format_price, rough_segments};
use super::signature::twilio_signature;
use super::state::{CarrierState, MessageRecord, RecordedCallback, new_sid};

/// Attempts per status callback (the first try plus retries).
const CALLBACK_ATTEMPTS: u32 = 3;
/// Pause between attempts of one callback.
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// Sender a Messaging Service "picks" when a message names no `From` (Twilio's test sender).
const POOL_SENDER: &str = "+15005550006";

/// Current time as an RFC 2822 string, Twilio's date format.
pub(crate) fn now_rfc2822() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc2822)
        .unwrap_or_default()
}

/// `RawDlrDoneDate`: the delivery receipt's completion time as `YYMMDDhhmm`.
fn raw_dlr_done_date() -> String {
    let now = OffsetDateTime::now_utc();
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        now.year().rem_euclid(100),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute()
    )
}

/// One status change of an outbound message.
#[derive(Clone, Copy)]
enum Step {
    /// A Messaging Service picked a sender.
    Queued,
    Sent,
    Delivered,
    Undelivered(u32),
    Failed(u32),
}

impl Step {
    fn status(self) -> &'static str {
        match self {
            Step::Queued => "queued",
            Step::Sent => "sent",
            Step::Delivered => "delivered",
            Step::Undelivered(_) => "undelivered",
            Step::Failed(_) => "failed",
        }
    }

    fn error_code(self) -> Option<u32> {
        match self {
            Step::Undelivered(code) | Step::Failed(code) => Some(code),
            _ => None,
        }
    }

    fn apply(self, record: &mut MessageRecord) {
        let now = now_rfc2822();
        record.status = self.status().to_owned();
        record.date_updated = now.clone();
        match self {
            Step::Queued => {
                if record.from.is_none() {
                    record.from = Some(POOL_SENDER.to_owned());
                }
                record.num_segments = rough_segments(&record.body).to_string();
            }
            Step::Sent => record.date_sent = Some(now),
            Step::Delivered => {
                let segs = record.num_segments.parse::<usize>().unwrap_or(1);
                record.price = Some(format_price(segs));
            }
            Step::Undelivered(code) | Step::Failed(code) => {
                record.error_code = Some(code);
                record.error_message = Some(error_text(code).to_owned());
            }
        }
    }
}

fn error_text(code: u32) -> &'static str {
    match code {
        30003 => "Unreachable destination handset",
        30007 => "Message filtered",
        _ => "Unknown error",
    }
}

/// The statuses a message will go through after creation, chosen from its recipient.
fn plan(record: &MessageRecord) -> Vec<Step> {
    let mut steps = Vec::new();
    if record.status == "accepted" {
        steps.push(Step::Queued);
    }
    if record.to.ends_with("0070") {
        steps.push(Step::Failed(30007));
    } else if record.to.ends_with("0030") {
        steps.extend([Step::Sent, Step::Undelivered(30003)]);
    } else {
        steps.extend([Step::Sent, Step::Delivered]);
    }
    steps
}

/// Moves message `sid` through its statuses in the background, posting each to `status_callback`.
pub(crate) fn start_lifecycle(state: &CarrierState, sid: &str, status_callback: Option<String>) {
    let task_state = state.clone();
    let sid = sid.to_owned();
    state.spawn_task(async move {
        let state = task_state;
        let Some(record) = state.message(&sid) else {
            return;
        };
        let delay = state.config().callback_delay;
        for step in plan(&record) {
            tokio::time::sleep(delay).await;
            let Some(updated) = state.update_message(&sid, |r| step.apply(r)) else {
                return;
            };
            if let Some(url) = &status_callback {
                let params = callback_params(&updated, step);
                if state.loses_callbacks() {
                    lose_callback(&state, url, params);
                } else {
                    post_callback(&state, url, params).await;
                }
            }
        }
    });
}

fn callback_params(record: &MessageRecord, step: Step) -> Vec<(String, String)> {
    let status = step.status();
    let mut params: Vec<(&str, String)> = vec![
        ("MessageSid", record.sid.clone()),
        ("SmsSid", record.sid.clone()),
        ("MessageStatus", status.to_owned()),
        ("SmsStatus", status.to_owned()),
        ("AccountSid", record.account_sid.clone()),
        ("From", record.from.clone().unwrap_or_default()),
        ("To", record.to.clone()),
        ("ApiVersion", record.api_version.clone()),
    ];
    if let Some(ms) = &record.messaging_service_sid {
        params.push(("MessagingServiceSid", ms.clone()));
    }
    if let Some(code) = step.error_code() {
        params.push(("ErrorCode", code.to_string()));
    }
    if matches!(step, Step::Delivered | Step::Undelivered(_)) {
        params.push(("RawDlrDoneDate", raw_dlr_done_date()));
    }
    if matches!(step, Step::Delivered) {
        params.push(("Price", record.price.clone().unwrap_or_default()));
        params.push(("PriceUnit", record.price_unit.clone()));
        params.push(("NumSegments", record.num_segments.clone()));
    }
    params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Posts `params` to `url` as a signed Twilio webhook; returns the response status.
pub(super) async fn post_signed(
    state: &CarrierState,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> Result<StatusCode, CarrierError> {
    let body = serde_urlencoded::to_string(params)?;
    let response = state
        .client()
        .post(url)
        .header(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .header("X-Twilio-Signature", signature)
        .header("I-Twilio-Idempotency-Token", new_sid(""))
        .body(body)
        .send()
        .await?;
    Ok(response.status())
}

/// Records a status callback that is never posted, as a receiver that was down would miss it.
fn lose_callback(state: &CarrierState, url: &str, params: Vec<(String, String)>) {
    let signature = twilio_signature(&state.config().auth_token, url, &params);
    tracing::debug!(%url, "losing a status callback on purpose");
    state.record_lost_callback(RecordedCallback {
        url: url.to_owned(),
        params,
        signature,
        status: None,
        attempt: 0,
        at: Instant::now(),
    });
}

/// Delivers one status callback, retrying failures (errors and non-2xx) a couple of times.
async fn post_callback(state: &CarrierState, url: &str, params: Vec<(String, String)>) {
    // Signed by the account that sent the message, as Twilio signs with the account's token.
    let config = state.config();
    let account = params
        .iter()
        .find(|(k, _)| k == "AccountSid")
        .map_or(config.account_sid.as_str(), |(_, v)| v.as_str());
    let token = config.token_for(account).unwrap_or(&config.auth_token);
    let signature = twilio_signature(token, url, &params);
    for attempt in 1..=CALLBACK_ATTEMPTS {
        let turn = state.callback_turn().await;
        let result = post_signed(state, url, &params, &signature).await;
        drop(turn);
        let status = result.as_ref().ok().map(|s| s.as_u16());
        state.record_callback(RecordedCallback {
            url: url.to_owned(),
            params: params.clone(),
            signature: signature.clone(),
            status,
            attempt,
            at: Instant::now(),
        });
        match result {
            Ok(s) if s.is_success() => return,
            Ok(s) => {
                tracing::debug!(%url, status = s.as_u16(), attempt, "status callback rejected")
            }
            Err(err) => tracing::debug!(%url, %err, attempt, "status callback failed"),
        }
        if attempt < CALLBACK_ATTEMPTS {
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }
    tracing::warn!(%url, attempts = CALLBACK_ATTEMPTS, "dropping undeliverable status callback");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `RawDlrDoneDate` is ten digits.
    #[test]
    fn dlr_date_shape() {
        let d = raw_dlr_done_date();
        assert_eq!(d.len(), 10);
        assert!(d.bytes().all(|b| b.is_ascii_digit()));
    }
}
