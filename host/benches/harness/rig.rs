//! What every scenario stands on: fresh databases, the local carrier, Herald on an ephemeral
//! port, closed-loop HTTP load bounded in time, queue pre-fills and process measurements.
//! The pipeline bench (`benches/pipeline.rs`) stands on it too.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald::config::{Config, ConfigSource, DeliveryConfig, ServerConfig, StorageConfig};
use herald::segments::Encoding;
use herald::store::{Batch, BatchState, DraftCharges, NewMessage, Store};
use herald_testkit::carrier::{self, Carrier, CarrierConfig};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::common;

/// The carrier's account and token, as the Twilio plugin is configured with them.
pub const SID: &str = "AC0123456789abcdef0123456789abcdef";
/// The carrier's auth token (it signs the status callbacks with it).
pub const TOKEN: &str = "bench-auth-token-0123456789";
/// The API key the load generator uses.
pub const API_KEY: &str = "bench-api-key";
/// Every message goes to this number (the carrier delivers it).
pub const TO: &str = "+14155552671";
/// The sender the Twilio plugin is configured with.
pub const FROM: &str = "+15005550006";
/// `delivery.workers` (the pipeline bench's default).
pub const WORKERS: usize = 32;
/// Concurrent HTTP clients (the pipeline bench's default).
pub const CLIENTS: usize = 64;
/// No single wait of the harness lasts longer than this, whatever the mode.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Which store a scenario runs on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    /// A SQLite file in a temporary directory (WAL, `synchronous = NORMAL`).
    Sqlite,
    /// A fresh database on the local PostgreSQL server.
    Postgres,
}

/// A fresh database for one scenario; [`Database::drop_now`] removes a PostgreSQL one, the
/// temporary directory goes with the guard.
pub struct Database {
    /// The storage URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

impl Database {
    /// A fresh, empty database on `backend`.
    pub async fn new(backend: Backend) -> Database {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                // Without `mode=`: the store then creates the file (as for Herald's default URL).
                let url = format!("sqlite://{}", dir.path().join("herald.db").display());
                Database {
                    url,
                    _dir: Some(dir),
                    postgres_name: None,
                }
            }
            Backend::Postgres => {
                let url = common::db::postgres_url().await;
                let name = url.rsplit_once('/').expect("a database name").1.to_owned();
                Database {
                    url,
                    _dir: None,
                    postgres_name: Some(name),
                }
            }
        }
    }

    /// Drops a PostgreSQL database (after every pool on it was closed).
    pub async fn drop_now(self) {
        let Some(name) = &self.postgres_name else {
            return;
        };
        let admin_url = std::env::var("HERALD_TEST_POSTGRES")
            .unwrap_or_else(|_| common::db::POSTGRES_ADMIN_URL.to_owned());
        if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut admin).await;
        }
    }
}

/// Herald's configuration for the harness: the Twilio plugin pointed at `carrier_url`.
pub fn config(storage_url: &str, public_url: &str, carrier_url: &str) -> Config {
    let mut config = common::config(
        vec![("twilio", common::twilio_settings(carrier_url, SID, TOKEN))],
        "twilio",
        "",
    );
    config.runtime.max_instances = 128;
    config.runtime.watch = false;
    config.server = ServerConfig {
        public_url: public_url.to_owned(),
        api_keys: vec![API_KEY.to_owned()],
        ..ServerConfig::default()
    };
    config.storage = StorageConfig {
        url: storage_url.to_owned(),
        ..StorageConfig::default()
    };
    config.delivery = DeliveryConfig {
        workers: WORKERS,
        ..DeliveryConfig::default()
    };
    config
}

/// When the carrier posts its status callbacks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Callbacks {
    /// Posted 50 ms after each step, as in the pipeline bench.
    Posted,
    /// Held back for an hour: none fires while the scenario runs.
    Held,
    /// Signed and recorded right away but never posted ([`Carrier::lost_callbacks`]), so that
    /// they can be replayed later.
    Recorded,
}

/// Starts a local Twilio-compatible carrier.
pub async fn carrier(callbacks: Callbacks) -> Carrier {
    let config = CarrierConfig {
        account_sid: SID.to_owned(),
        auth_token: TOKEN.to_owned(),
        callback_delay: match callbacks {
            Callbacks::Posted => Duration::from_millis(50),
            Callbacks::Held => Duration::from_secs(3600),
            Callbacks::Recorded => Duration::from_millis(1),
        },
        inbound_url: None,
        accounts: Vec::new(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let carrier = carrier::spawn(listener, config).await;
    carrier.lose_callbacks(callbacks == Callbacks::Recorded);
    carrier
}

/// One Herald on an ephemeral port: its API alone, or `Herald::serve` as in production.
pub struct Rig {
    /// The Herald.
    pub herald: herald::Herald,
    /// Its base URL.
    pub base_url: String,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl Rig {
    /// Starts Herald on `storage_url` sending to `carrier_url`; `full` serves it as production
    /// does (API, dispatcher and background tasks), otherwise only its API router is served and
    /// the dispatcher is not started. `tune` adjusts the configuration.
    pub async fn start(
        storage_url: &str,
        carrier_url: &str,
        full: bool,
        tune: impl FnOnce(&mut Config),
    ) -> Rig {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("an address"));
        let mut config = config(storage_url, &base_url, carrier_url);
        tune(&mut config);
        let herald = herald::Herald::builder()
            .config(config)
            .source(ConfigSource::default())
            .build()
            .await
            .expect("start Herald");
        let (stop, mut stopped) = watch::channel(false);
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let server = if full {
            let herald = herald.clone();
            tokio::spawn(async move { herald.serve(listener, shutdown).await.expect("serve") })
        } else {
            let router = herald.router();
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .expect("serve the API");
            })
        };
        Rig {
            herald,
            base_url,
            stop,
            server,
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.herald.store()
    }

    /// Stops serving (and, for a full rig, dispatching: attempts in flight are given 10 s) and
    /// closes the store.
    pub async fn stop(self) {
        self.stop_within(Duration::from_secs(10)).await;
    }

    /// [`Rig::stop`], waiting up to `grace` for the server (and a full rig's attempts in flight)
    /// before aborting it.
    pub async fn stop_within(self, grace: Duration) {
        let _ = self.stop.send(true);
        let mut server = self.server;
        if tokio::time::timeout(grace, &mut server).await.is_err() {
            server.abort();
        }
        self.herald.close().await;
    }
}

/// The load generator's HTTP client: keep-alive, one pooled connection per client task.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

/// Runs `clients` tasks, each calling `request(i)` with a fresh `i` back to back until
/// `window` has passed or a call answers `false` (no more work); returns how many calls did
/// work and the time until the last one finished.
pub async fn closed_loop<F, Fut>(clients: usize, window: Duration, request: F) -> (usize, Duration)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + window;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, request) = (Arc::clone(&next), request.clone());
            tokio::spawn(async move {
                let mut done = 0;
                while Instant::now() < deadline
                    && request(next.fetch_add(1, Ordering::Relaxed)).await
                {
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut done = 0;
    for task in tasks {
        done += bounded("a load task", task)
            .await
            .expect("a load task failed");
    }
    (done, start.elapsed())
}

/// Posts send `i` (a distinct body) to `base_url`, panicking unless it is answered 202.
pub async fn post_send(client: &reqwest::Client, base_url: &str, i: usize) {
    let body =
        format!(r#"{{"to_number":"{TO}","message":"Your Herald verification code is {i:07}."}}"#);
    let response = client
        .post(format!("{base_url}/api/v1/sms/send"))
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send request");
    let status = response.status();
    let text = response.bytes().await.unwrap_or_default();
    assert!(
        status == reqwest::StatusCode::ACCEPTED,
        "send {i} answered {status}: {}",
        String::from_utf8_lossy(&text)
    );
}

/// The index a [`post_send`] or [`message`] body carries.
pub fn index_of(body: &str) -> Option<usize> {
    body.strip_prefix("Your Herald verification code is ")?
        .strip_suffix('.')?
        .parse()
        .ok()
}

/// Message `i` as the send path would store it (one GSM-7 segment, the default tenant).
pub fn message(i: usize, batch: Option<&str>) -> NewMessage {
    new_message(format!("Your Herald verification code is {i:07}."), batch)
}

/// A message with `body` (one GSM-7 segment, no charge) as the send path would store it for the
/// default tenant, part of `batch` when given.
pub fn new_message(body: String, batch: Option<&str>) -> NewMessage {
    NewMessage {
        id: herald::store::new_id("msg"),
        tenant_id: herald::TenantId::default_tenant(),
        to_number: TO.into(),
        sender: None,
        units: body.len() as u32,
        body,
        template_id: None,
        template_version: None,
        category: herald::Category::transactional(),
        encoding: Encoding::Gsm7,
        segments: 1,
        provider: "twilio".into(),
        max_attempts: 5,
        customer_id: None,
        order_id: None,
        reservation_id: None,
        metadata: None,
        idempotency_key: None,
        request_hash: None,
        due_at: None,
        bulk: batch.is_some(),
        batch_id: batch.map(str::to_owned),
        now: herald::store::now_millis(),
        charge: None,
    }
}

/// Queues `count` messages fast, as a bulk batch does: drafts inserted 5,000 to a statement,
/// then queued in one transaction per 100,000. Returns how long it took.
pub async fn prefill(store: &Store, count: usize) -> Duration {
    const CHUNK: usize = 5_000;
    const PER_BATCH: usize = 100_000;
    let start = Instant::now();
    let tenant = herald::TenantId::default_tenant();
    let mut queued = 0;
    while queued < count {
        let in_batch = PER_BATCH.min(count - queued);
        let now = herald::store::now_millis();
        let batch = Batch {
            id: herald::store::new_id("bat"),
            tenant_id: tenant.clone(),
            name: Some("harness prefill".into()),
            state: BatchState::Draft,
            category: None,
            template_id: None,
            template_variables: None,
            allow_duplicates: true,
            send_at: None,
            created_at: now,
            started_at: None,
            canceled_at: None,
        };
        store.create_batch(&batch).await.expect("create a batch");
        let mut inserted = 0;
        while inserted < in_batch {
            let n = CHUNK.min(in_batch - inserted);
            let rows: Vec<NewMessage> = (0..n)
                .map(|k| message(queued + inserted + k, Some(&batch.id)))
                .collect();
            store
                .insert_batch_messages(&tenant, &batch.id, &rows, false)
                .await
                .expect("insert a chunk")
                .expect("the batch is a draft");
            inserted += n;
        }
        store
            .send_batch(&tenant, &batch.id, now, now, &DraftCharges::default())
            .await
            .expect("queue the batch")
            .expect("the batch was a draft");
        queued += in_batch;
    }
    start.elapsed()
}

/// How many messages the queue holds (queued or sending).
pub async fn depth(store: &Store) -> u64 {
    store.count_queue().await.expect("count the queue")
}

/// Waits for `future`, at most [`STEP_TIMEOUT`], panicking with `what` when that runs out.
pub async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {STEP_TIMEOUT:?}"))
}

/// This process's resident set size in bytes, from `/proc/self/status`.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// 4 KiB `write` + `fdatasync` round trips per second on the disk of the directory where the
/// SQLite scenarios keep their files (the system's temporary directory), for `window`.
pub fn fdatasync_rate(window: Duration) -> f64 {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut file = std::fs::File::create(dir.path().join("fdatasync.probe")).expect("create");
    let block = [0x5a_u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < window {
        // Rewrite the same 64 blocks in turn, as a WAL file's pages are rewritten.
        file.seek(SeekFrom::Start((n % 64) * 4096)).expect("seek");
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}
