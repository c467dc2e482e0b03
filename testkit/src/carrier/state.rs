//! Shared state of the fake carrier: stored messages, recorded traffic, scripted responses.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::task::JoinSet;

use super::CarrierConfig;

/// One HTTP request the carrier received on its API, recorded for tests.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Headers in arrival order, names lower-cased (includes `authorization`).
    pub headers: Vec<(String, String)>,
    /// Form fields decoded from a `application/x-www-form-urlencoded` body (empty otherwise).
    pub form: Vec<(String, String)>,
    /// Raw body, decoded as UTF-8 (lossily).
    pub body: String,
    /// When the request arrived.
    pub at: Instant,
}

impl RecordedRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        lookup(&self.headers, |k| k.eq_ignore_ascii_case(name))
    }

    /// The first form field called `name` (case-sensitive, like Twilio's parameter names).
    pub fn field(&self, name: &str) -> Option<&str> {
        lookup(&self.form, |k| k == name)
    }
}

/// One attempt to deliver a status callback, recorded for tests.
#[derive(Debug, Clone)]
pub struct RecordedCallback {
    /// The callback URL exactly as given in `StatusCallback`.
    pub url: String,
    /// Form parameters that were posted.
    pub params: Vec<(String, String)>,
    /// The `X-Twilio-Signature` header that was sent.
    pub signature: String,
    /// Response status, or `None` if the request failed before a response arrived.
    pub status: Option<u16>,
    /// 1 for the first attempt, 2 and 3 for retries.
    pub attempt: u32,
    /// When the attempt finished.
    pub at: Instant,
}

impl RecordedCallback {
    /// The first parameter called `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        lookup(&self.params, |k| k == name)
    }

    /// True when the receiver answered with a 2xx status.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

fn lookup(pairs: &[(String, String)], matches: impl Fn(&str) -> bool) -> Option<&str> {
    pairs
        .iter()
        .find(|(k, _)| matches(k))
        .map(|(_, v)| v.as_str())
}

/// A one-shot forced answer to the next create-message request, used by tests.
///
/// Scripts are consumed in FIFO order, one per `POST …/Messages.json`, before authentication and
/// validation. Fetch and list requests never consume them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptedResponse {
    /// A Twilio-shaped JSON error with this HTTP status and Twilio error code.
    Error {
        /// HTTP status, e.g. 429 or 400.
        http_status: u16,
        /// Twilio error code, e.g. 20429 or 21211.
        code: u32,
        /// Value of a `Retry-After` header (seconds), if one should be sent.
        retry_after: Option<u32>,
    },
    /// A Twilio-shaped server error (code `20000 + status`, e.g. 20503) with this 5xx status.
    Status5xx(u16),
    /// Sleep this long, then process the request normally (if the client is still there).
    Hang(Duration),
    /// An arbitrary response, e.g. an HTML error page from a proxy.
    Raw {
        /// HTTP status.
        http_status: u16,
        /// `Content-Type` header value.
        content_type: String,
        /// Response body.
        body: String,
    },
}

impl ScriptedResponse {
    /// A Twilio error with no `Retry-After` header.
    pub fn error(http_status: u16, code: u32) -> Self {
        Self::Error {
            http_status,
            code,
            retry_after: None,
        }
    }

    /// HTTP 429 with code 20429, optionally with `Retry-After`.
    pub fn rate_limited(retry_after: Option<u32>) -> Self {
        Self::Error {
            http_status: 429,
            code: 20429,
            retry_after,
        }
    }
}

/// A Message resource as Twilio's REST API returns it (snake_case JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Account that owns the message.
    pub account_sid: String,
    /// Always `2010-04-01`.
    pub api_version: String,
    /// Message text.
    pub body: String,
    /// RFC 2822 creation time.
    pub date_created: String,
    /// RFC 2822 time the carrier accepted it, null until `sent`.
    pub date_sent: Option<String>,
    /// RFC 2822 time of the last status change.
    pub date_updated: String,
    /// `outbound-api` or `inbound`.
    pub direction: String,
    /// Error code for `failed` / `undelivered`.
    pub error_code: Option<u32>,
    /// Error description for `failed` / `undelivered`.
    pub error_message: Option<String>,
    /// Sender; null while a Messaging Service has not picked one.
    pub from: Option<String>,
    /// Messaging Service used, if any.
    pub messaging_service_sid: Option<String>,
    /// Number of media items, as a string.
    pub num_media: String,
    /// Number of segments, as a string (`"0"` until a Messaging Service picks a sender).
    pub num_segments: String,
    /// Negative price string once billed, e.g. `"-0.00830"`.
    pub price: Option<String>,
    /// Currency of `price`.
    pub price_unit: String,
    /// `SM` + 32 hex digits.
    pub sid: String,
    /// Current status (`queued`, `accepted`, `sent`, `delivered`, …).
    pub status: String,
    /// Sub-resource URIs (`media`).
    pub subresource_uris: BTreeMap<String, String>,
    /// Recipient.
    pub to: String,
    /// This resource's URI.
    pub uri: String,
}

/// State shared by the router, the background tasks and the [`super::Carrier`] handle.
///
/// Cloning is cheap; all clones share the same data.
#[derive(Clone)]
pub struct CarrierState {
    inner: Arc<Inner>,
}

struct Inner {
    config: CarrierConfig,
    inbound_url: Mutex<Option<String>>,
    messages: Mutex<Messages>,
    requests: Mutex<Vec<RecordedRequest>>,
    callbacks: Mutex<Vec<RecordedCallback>>,
    /// While set, status callbacks are held back instead of posted (see `set_lose_callbacks`).
    lose_callbacks: AtomicBool,
    lost_callbacks: Mutex<Vec<RecordedCallback>>,
    scripts: Mutex<VecDeque<ScriptedResponse>>,
    opt_outs: Mutex<HashSet<(String, String)>>,
    tasks: Mutex<JoinSet<()>>,
    client: reqwest::Client,
    /// Status callbacks being posted at once, at most [`CALLBACKS_IN_FLIGHT`].
    posting: Semaphore,
}

/// How many status callbacks the carrier posts at once; the others wait their turn. A real
/// carrier's webhook sender is bounded too, and an unbounded one opened a connection per
/// callback: in a load test whose receiver fell behind, thousands at once, until this process
/// (the carrier and the receiver together) ran out of file descriptors.
pub const CALLBACKS_IN_FLIGHT: usize = 256;

/// Messages in arrival order, indexed by SID: status updates find theirs in constant time
/// however long a load test runs.
#[derive(Default)]
struct Messages {
    list: Vec<MessageRecord>,
    by_sid: HashMap<String, usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CarrierState {
    /// Creates empty state for `config`.
    pub fn new(config: CarrierConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .user_agent("TwilioProxy/1.1")
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                inbound_url: Mutex::new(config.inbound_url.clone()),
                config,
                messages: Mutex::default(),
                requests: Mutex::default(),
                callbacks: Mutex::default(),
                lose_callbacks: AtomicBool::new(false),
                lost_callbacks: Mutex::default(),
                scripts: Mutex::default(),
                opt_outs: Mutex::default(),
                tasks: Mutex::new(JoinSet::new()),
                client,
                posting: Semaphore::new(CALLBACKS_IN_FLIGHT),
            }),
        }
    }

    /// Waits for a turn to post a status callback (see [`CALLBACKS_IN_FLIGHT`]).
    pub(crate) async fn callback_turn(&self) -> Option<SemaphorePermit<'_>> {
        self.inner.posting.acquire().await.ok()
    }

    /// The configuration this carrier runs with.
    pub fn config(&self) -> &CarrierConfig {
        &self.inner.config
    }

    /// Where simulated inbound messages are posted.
    pub fn inbound_url(&self) -> Option<String> {
        lock(&self.inner.inbound_url).clone()
    }

    /// Changes where simulated inbound messages are posted.
    pub fn set_inbound_url(&self, url: Option<String>) {
        *lock(&self.inner.inbound_url) = url;
    }

    /// Every API request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.requests).clone()
    }

    /// Every status-callback attempt so far, oldest first.
    pub fn callbacks(&self) -> Vec<RecordedCallback> {
        lock(&self.inner.callbacks).clone()
    }

    /// Makes the carrier lose (`true`) or deliver (`false`) the status callbacks of every status
    /// change from now on, as if they never reached the receiver. Messages still change status,
    /// so fetching them shows where they are.
    pub fn set_lose_callbacks(&self, lose: bool) {
        self.inner.lose_callbacks.store(lose, Ordering::SeqCst);
    }

    /// Whether status callbacks are being lost.
    pub fn loses_callbacks(&self) -> bool {
        self.inner.lose_callbacks.load(Ordering::SeqCst)
    }

    /// The status callbacks lost so far, oldest first: never posted, so `status` is `None` and
    /// `attempt` is 0.
    pub fn lost_callbacks(&self) -> Vec<RecordedCallback> {
        lock(&self.inner.lost_callbacks).clone()
    }

    pub(crate) fn record_lost_callback(&self, callback: RecordedCallback) {
        lock(&self.inner.lost_callbacks).push(callback);
    }

    /// Queues a forced response for a future create-message request.
    pub fn script(&self, response: ScriptedResponse) {
        lock(&self.inner.scripts).push_back(response);
    }

    /// All messages (outbound and simulated inbound), oldest first.
    pub fn messages(&self) -> Vec<MessageRecord> {
        lock(&self.inner.messages).list.clone()
    }

    /// The current state of one message.
    pub fn message(&self, sid: &str) -> Option<MessageRecord> {
        let messages = lock(&self.inner.messages);
        messages.by_sid.get(sid).map(|&i| messages.list[i].clone())
    }

    /// True if `recipient` texted an opt-out keyword to `sender` and has not opted back in.
    pub fn is_opted_out(&self, recipient: &str, sender: &str) -> bool {
        lock(&self.inner.opt_outs).contains(&(recipient.to_owned(), sender.to_owned()))
    }

    pub(crate) fn set_opted_out(&self, recipient: &str, sender: &str, opted_out: bool) {
        let key = (recipient.to_owned(), sender.to_owned());
        let mut set = lock(&self.inner.opt_outs);
        if opted_out {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    pub(crate) fn record_request(&self, request: RecordedRequest) {
        lock(&self.inner.requests).push(request);
    }

    pub(crate) fn record_callback(&self, callback: RecordedCallback) {
        lock(&self.inner.callbacks).push(callback);
    }

    pub(crate) fn next_script(&self) -> Option<ScriptedResponse> {
        lock(&self.inner.scripts).pop_front()
    }

    pub(crate) fn insert_message(&self, record: MessageRecord) {
        let mut messages = lock(&self.inner.messages);
        let index = messages.list.len();
        messages.by_sid.insert(record.sid.clone(), index);
        messages.list.push(record);
    }

    /// Applies `change` to a stored message and returns the updated copy.
    pub(crate) fn update_message(
        &self,
        sid: &str,
        change: impl FnOnce(&mut MessageRecord),
    ) -> Option<MessageRecord> {
        let mut messages = lock(&self.inner.messages);
        let index = *messages.by_sid.get(sid)?;
        let record = &mut messages.list[index];
        change(record);
        Some(record.clone())
    }

    /// Runs `task` in the background; [`CarrierState::abort_tasks`] cancels it.
    pub(crate) fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.inner.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Cancels every background task (status callbacks in flight).
    pub(crate) fn abort_tasks(&self) {
        lock(&self.inner.tasks).abort_all();
    }
}

/// A new SID: `prefix` followed by 32 lower-case hex digits.
pub(crate) fn new_sid(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let mut sid = String::with_capacity(34);
    sid.push_str(prefix);
    for b in bytes {
        sid.push_str(&format!("{b:02x}"));
    }
    sid
}
