//! The native provider: the Twilio plugin's send written in Rust with reqwest, and a dispatch
//! loop that uses it where Herald's dispatcher would call the plugin.
//!
//! The pipeline has no seam for an in-process provider (the dispatcher calls a loaded plugin),
//! so the native pipeline is driven by the harness against the same `Store` API, and does per
//! message what `pipeline::dispatch::attempt` does around the plugin call:
//!
//! 1. `Store::claim` of up to the free worker slots (32 workers, the same lease);
//! 2. the opt-out re-check (`Store::is_opted_out`);
//! 3. the status-callback URL with the host's token for the message;
//! 4. the send: the plugin's wire request (form `To`, `From`, `Body`, `StatusCallback`, HTTP
//!    Basic auth, `Accept` and `User-Agent` headers, 2 s timeout), the JSON answer parsed for
//!    the SID, status, segment count and sender;
//! 5. `Store::complete_accepted` with what the answer said.
//!
//! Left out: the tenant's provider lookup, `classify` (every answer here is an acceptance; any
//! other answer panics), tracing and metrics calls. Those are cheap next to the store and HTTP
//! work, so the native pipeline's rate is what the dispatcher could reach with a free provider.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use herald::pipeline::Pipeline;
use herald::store::{Accepted, ClaimedJob};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::rig::{FROM, SID, TOKEN, WORKERS};

/// The Twilio send made natively: what the plugin sends and parses, without the sandbox.
#[derive(Clone)]
pub struct NativeTwilio {
    client: reqwest::Client,
    url: String,
    authorization: String,
}

/// What the carrier answered to an accepted send.
pub struct NativeAccepted {
    sid: String,
    status: String,
    segments: Option<u32>,
    from: Option<String>,
}

impl NativeTwilio {
    /// A sender for the carrier at `carrier_url`.
    pub fn new(carrier_url: &str) -> NativeTwilio {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
        NativeTwilio {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(WORKERS * 2)
                .build()
                .expect("an HTTP client"),
            url: format!("{carrier_url}/2010-04-01/Accounts/{SID}/Messages.json"),
            authorization: format!("Basic {basic}"),
        }
    }

    /// Sends one message; panics unless the carrier accepts it (201).
    pub async fn send(&self, to: &str, body: &str, callback: Option<&str>) -> NativeAccepted {
        let mut form = vec![("To", to), ("From", FROM), ("Body", body)];
        if let Some(callback) = callback {
            form.push(("StatusCallback", callback));
        }
        let form = serde_urlencoded::to_string(form).expect("a form");
        let response = self
            .client
            .post(&self.url)
            .timeout(Duration::from_millis(2_000))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .header("Authorization", &self.authorization)
            .header("User-Agent", "herald-twilio/0.1.0")
            .body(form)
            .send()
            .await
            .expect("the carrier answers");
        assert_eq!(response.status().as_u16(), 201, "the carrier accepts");
        let json: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.expect("a body")).expect("JSON");
        let text = |key: &str| json[key].as_str().map(str::to_owned);
        NativeAccepted {
            sid: text("sid").expect("a sid"),
            status: text("status").unwrap_or_default(),
            segments: text("num_segments").and_then(|s| s.parse().ok()),
            from: text("from"),
        }
    }
}

/// Dispatches through `native` until the queue is empty or `window` has passed; returns how
/// many messages were recorded `sent` and the time that took.
pub async fn dispatch(
    pipeline: &Pipeline,
    native: &NativeTwilio,
    window: Duration,
) -> (usize, Duration) {
    let permits = Arc::new(Semaphore::new(WORKERS));
    let lease = Duration::from_millis(pipeline.config().delivery.lease_ms);
    let mut in_flight: JoinSet<bool> = JoinSet::new();
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < window {
        while let Some(done) = in_flight.try_join_next() {
            sent += usize::from(done.expect("a native attempt panicked"));
        }
        let free = permits.available_permits() as u32;
        if free == 0 {
            if let Some(done) = in_flight.join_next().await {
                sent += usize::from(done.expect("a native attempt panicked"));
            }
            continue;
        }
        let jobs = pipeline
            .store()
            .claim("harness-native", pipeline.now(), lease, free)
            .await
            .expect("claim");
        if jobs.is_empty() {
            if in_flight.is_empty() {
                break;
            }
            if let Some(done) = in_flight.join_next().await {
                sent += usize::from(done.expect("a native attempt panicked"));
            }
            continue;
        }
        for job in jobs {
            let permit = Arc::clone(&permits)
                .try_acquire_owned()
                .expect("claimed no more than the free slots");
            let (pipeline, native) = (pipeline.clone(), native.clone());
            in_flight.spawn(async move {
                let sent = attempt(&pipeline, &native, &job).await;
                drop(permit);
                sent
            });
        }
    }
    while let Some(done) = in_flight.join_next().await {
        sent += usize::from(done.expect("a native attempt panicked"));
    }
    (sent, start.elapsed())
}

/// One attempt as the dispatcher makes it, with the native send; whether it was recorded.
async fn attempt(pipeline: &Pipeline, native: &NativeTwilio, job: &ClaimedJob) -> bool {
    let message = &job.message;
    let store = pipeline.store();
    let opted_out = store
        .is_opted_out(&message.tenant_id, &message.to_number, &message.category)
        .await
        .expect("opt-out check");
    assert!(!opted_out, "the harness's recipient never opts out");
    let token = pipeline
        .callback_key()
        .token(&message.tenant_id, &message.id, "twilio");
    let callback = herald::pipeline::dispatch::status_callback_url(
        &pipeline.config().server.public_url,
        "twilio",
        &message.id,
        &token,
    );
    let answer = native
        .send(&message.to_number, &message.body, Some(&callback))
        .await;
    let accepted = Accepted {
        provider: "twilio".into(),
        provider_message_id: answer.sid,
        provider_status: Some(answer.status),
        segments: answer.segments,
        price: None,
        sender: answer.from,
    };
    let outcome = store
        .complete_accepted(job.lease(), &accepted, pipeline.now())
        .await
        .expect("record the outcome");
    matches!(outcome, herald::store::LeaseOutcome::Applied)
}
