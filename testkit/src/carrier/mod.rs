//! A local fake carrier that speaks Twilio's Messages wire protocol, for tests and the demo.
//!
//! [`spawn`] starts an HTTP server implementing `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`
//! and `GET …/Messages/{MessageSid}.json` with Twilio's authentication, validation, error bodies and
//! magic test numbers. Accepted messages move through `sent` → `delivered` (or a failure) in the
//! background, and each step is posted to the message's `StatusCallback`, signed with
//! `X-Twilio-Signature`. [`Carrier::send_inbound`] simulates a handset texting in, and so does
//! `POST /testkit/inbound` from outside the process (see [`request_inbound`]).
//!
//! Recipient numbers with special behaviour:
//!
//! | `To` | result |
//! |---|---|
//! | `+15005550001` | 400, code 21211 (invalid number) |
//! | `+15005550002` | 400, code 21612 (unreachable) |
//! | `+15005550004` | 400, code 21610 (unsubscribed) |
//! | `+15005550009` | 400, code 21614 (not a mobile number) |
//! | ends in `0030` | `sent`, then `undelivered` with error 30003 |
//! | ends in `0070` | `failed` with error 30007 |
//!
//! A recipient that texted an opt-out keyword (STOP, UNSUBSCRIBE, …) through
//! [`Carrier::send_inbound`] gets 21610 for sends from that number until it texts START.
//!
//! [`Carrier::lose_callbacks`] makes the carrier hold back every status callback (messages still
//! change status, and `GET …/Messages/{MessageSid}.json` shows it), to test what happens when
//! callbacks are lost.
//!
//! Segment counts and prices are Twilio-shaped but rough (see `billing.rs`): Herald's own count
//! is the exact one.

mod api;
mod billing;
mod callbacks;
mod inbound;
mod signature;
mod state;
mod validate;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use api::router;
pub use inbound::{INBOUND_PATH, InboundReceipt, InboundRequest, request_inbound};
pub use signature::{twilio_signature, verify_twilio_signature};
pub use state::{CarrierState, MessageRecord, RecordedCallback, RecordedRequest, ScriptedResponse};

/// The HTTP status type returned by [`Carrier::send_inbound`].
pub use axum::http::StatusCode;

/// Settings of a fake carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierConfig {
    /// Account SID accepted in Basic auth and in the URL path (`AC…`).
    pub account_sid: String,
    /// Auth token accepted in Basic auth and used to sign webhooks.
    pub auth_token: String,
    /// Pause before each status change (and its callback). Default 50 ms.
    pub callback_delay: Duration,
    /// Where simulated inbound messages are posted (Herald's inbound webhook).
    pub inbound_url: Option<String>,
    /// Further accounts (as for Herald's tenants with credentials of their own), each with the
    /// numbers it owns: inbound messages to those numbers are signed with its token.
    pub accounts: Vec<Account>,
}

/// A further account of the carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its SID (`AC…`).
    pub sid: String,
    /// Its auth token.
    pub token: String,
    /// The numbers it owns.
    pub numbers: Vec<String>,
}

impl CarrierConfig {
    /// The auth token of account `sid`, if the carrier has that account.
    #[must_use]
    pub fn token_for(&self, sid: &str) -> Option<&str> {
        if sid == self.account_sid {
            return Some(&self.auth_token);
        }
        self.accounts
            .iter()
            .find(|a| a.sid == sid)
            .map(|a| a.token.as_str())
    }

    /// The account (SID and token) that owns `number`: a further account that lists it, else
    /// the main one.
    #[must_use]
    pub fn account_for_number(&self, number: &str) -> (&str, &str) {
        self.accounts
            .iter()
            .find(|a| a.numbers.iter().any(|n| n == number))
            .map_or((&self.account_sid, &self.auth_token), |a| {
                (a.sid.as_str(), a.token.as_str())
            })
    }

    /// A configuration with these credentials and the default delay, without an inbound URL.
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<String>) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            ..Self::default()
        }
    }
}

impl Default for CarrierConfig {
    fn default() -> Self {
        Self {
            account_sid: "AC00000000000000000000000000000000".to_owned(),
            auth_token: "herald-local-carrier-token".to_owned(),
            callback_delay: Duration::from_millis(50),
            inbound_url: None,
            accounts: Vec::new(),
        }
    }
}

/// Errors from simulating an inbound message ([`Carrier::send_inbound`], [`request_inbound`]).
#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    /// No inbound URL is configured.
    #[error("no inbound_url configured for the carrier")]
    NoInboundUrl,
    /// The webhook request could not be encoded.
    #[error("could not encode webhook form: {0}")]
    Encode(#[from] serde_urlencoded::ser::Error),
    /// The webhook request failed before a response arrived.
    #[error("inbound webhook request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The carrier's `POST /testkit/inbound` could not be reached.
    #[error("could not reach the carrier at {url} (is `herald demo` running?): {source}")]
    Unreachable {
        /// The endpoint's URL.
        url: String,
        /// Why the request failed.
        source: reqwest::Error,
    },
    /// The carrier refused a simulated inbound message.
    #[error("the carrier refused the inbound message (HTTP {status}): {message}")]
    Refused {
        /// The carrier's HTTP status.
        status: u16,
        /// The carrier's explanation.
        message: String,
    },
}

/// Handle to a running fake carrier. Dropping it stops the server.
pub struct Carrier {
    state: CarrierState,
    base_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// Starts a fake carrier serving on `listener` in a background tokio task.
pub async fn spawn(listener: TcpListener, config: CarrierConfig) -> Carrier {
    let base_url = match listener.local_addr() {
        Ok(addr) => base_url_for(addr),
        Err(err) => {
            tracing::error!(%err, "carrier listener has no local address");
            "http://127.0.0.1:0".to_owned()
        }
    };
    // libphonenumber's metadata loads on first use; pay for it here, not inside a client's timeout.
    let _ = tokio::task::spawn_blocking(validate::warm_up).await;
    let state = CarrierState::new(config);
    let app = router(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async {
            let _ = rx.await;
        };
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%err, "carrier server stopped with an error");
        }
    });
    tracing::info!(%base_url, "fake carrier listening");
    Carrier {
        state,
        base_url,
        shutdown: Some(tx),
        server: Some(server),
    }
}

fn base_url_for(addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if addr.is_ipv6() {
            std::net::Ipv6Addr::LOCALHOST.into()
        } else {
            std::net::Ipv4Addr::LOCALHOST.into()
        };
        addr.set_ip(loopback);
    }
    format!("http://{addr}")
}

impl Carrier {
    /// Root URL of the server, e.g. `http://127.0.0.1:41234` (use it where `https://api.twilio.com` goes).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The full create-message URL for the configured account.
    pub fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base_url,
            self.state.config().account_sid
        )
    }

    /// The shared state, e.g. to build another [`router`] or to keep after the handle is gone.
    pub fn state(&self) -> &CarrierState {
        &self.state
    }

    /// The configuration this carrier runs with.
    pub fn config(&self) -> &CarrierConfig {
        self.state.config()
    }

    /// Every API request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// Every status-callback attempt so far, oldest first.
    pub fn callbacks(&self) -> Vec<RecordedCallback> {
        self.state.callbacks()
    }

    /// Waits until at least `count` callback attempts succeeded (2xx) or `timeout` passes, then
    /// returns the successful ones, oldest first.
    pub async fn wait_for_callbacks(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Vec<RecordedCallback> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let done: Vec<RecordedCallback> = self
                .state
                .callbacks()
                .into_iter()
                .filter(RecordedCallback::succeeded)
                .collect();
            if done.len() >= count || tokio::time::Instant::now() >= deadline {
                return done;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// From now on loses (`true`) or delivers (`false`) status callbacks; see
    /// [`CarrierState::set_lose_callbacks`].
    pub fn lose_callbacks(&self, lose: bool) {
        self.state.set_lose_callbacks(lose);
    }

    /// The status callbacks lost so far, oldest first.
    pub fn lost_callbacks(&self) -> Vec<RecordedCallback> {
        self.state.lost_callbacks()
    }

    /// Waits until message `sid` has `status` or `timeout` passes; returns it when it has.
    pub async fn wait_for_status(
        &self,
        sid: &str,
        status: &str,
        timeout: Duration,
    ) -> Option<MessageRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.state.message(sid) {
                Some(record) if record.status == status => return Some(record),
                _ if tokio::time::Instant::now() >= deadline => return None,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// All messages (outbound and simulated inbound), oldest first.
    pub fn messages(&self) -> Vec<MessageRecord> {
        self.state.messages()
    }

    /// The current state of one message.
    pub fn message(&self, sid: &str) -> Option<MessageRecord> {
        self.state.message(sid)
    }

    /// Queues a one-shot forced response; see [`ScriptedResponse`].
    pub fn script(&self, response: ScriptedResponse) {
        self.state.script(response);
    }

    /// Changes where [`Carrier::send_inbound`] posts.
    pub fn set_inbound_url(&self, url: impl Into<String>) {
        self.state.set_inbound_url(Some(url.into()));
    }

    /// Simulates `from` texting `body` to `to`: posts a signed Twilio inbound-message webhook to
    /// the configured inbound URL and returns the receiver's HTTP status.
    ///
    /// Opt-out keywords (STOP, …) sent this way make later sends from `to` to `from` fail with
    /// 21610; opt-in keywords (START, YES, UNSTOP) lift that.
    pub async fn send_inbound(
        &self,
        from: &str,
        to: &str,
        body: &str,
    ) -> Result<StatusCode, CarrierError> {
        let posted = inbound::post_inbound(&self.state, from, to, body).await?;
        Ok(posted.status)
    }

    /// Stops the server (waiting briefly for requests in flight) and cancels pending callbacks.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(Duration::from_secs(2), &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
        self.state.abort_tasks();
    }
}

impl Drop for Carrier {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        self.state.abort_tasks();
    }
}
