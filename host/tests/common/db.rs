//! Store fixtures: a fresh migrated SQLite file, a fresh migrated PostgreSQL database, and
//! [`on_each_backend!`](crate::on_each_backend) to run one scenario on both.
//!
//! PostgreSQL must be reachable at [`POSTGRES_ADMIN_URL`] (or `HERALD_TEST_POSTGRES`): when it is
//! not, the PostgreSQL half of every store test fails; it is never skipped.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use herald::store::{Store, StoreOptions, now_millis};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The server and database the tests connect to first, to create a database per test.
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Test databases older than this are dropped by later runs (left by runs that were killed).
const STALE_AFTER_MS: i64 = 60 * 60 * 1000;

/// A migrated store on a new SQLite file; the file lives as long as the returned directory.
pub async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("herald.db").display()
    );
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .expect("open the SQLite store");
    store.migrate().await.expect("migrate the SQLite store");
    (store, dir)
}

/// A migrated store on a new, uniquely named PostgreSQL database.
pub async fn postgres() -> Store {
    let store = Store::connect(&postgres_url().await, &StoreOptions::default())
        .await
        .expect("connect to the test database");
    store.migrate().await.expect("migrate the PostgreSQL store");
    store
}

/// Creates a new, empty, uniquely named PostgreSQL database and returns its URL.
pub async fn postgres_url() -> String {
    let admin_url =
        std::env::var("HERALD_TEST_POSTGRES").unwrap_or_else(|_| POSTGRES_ADMIN_URL.to_owned());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "the store tests need PostgreSQL at {admin_url} (set HERALD_TEST_POSTGRES): {error}"
            )
        });
    drop_stale_databases(&mut admin).await;
    let name = format!("herald_test_{}_{:08x}", now_millis(), rand::random::<u32>());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let base = admin_url
        .rsplit_once('/')
        .map_or(&*admin_url, |(base, _)| base);
    format!("{base}/{name}")
}

/// Drops the databases of earlier runs that are more than an hour old.
async fn drop_stale_databases(admin: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'herald_test_%'")
            .fetch_all(&mut *admin)
            .await
            .expect("list test databases");
    let cutoff = now_millis() - STALE_AFTER_MS;
    for name in names {
        let created = name
            .split('_')
            .nth(2)
            .and_then(|millis| millis.parse::<i64>().ok());
        if created.is_some_and(|created| created < cutoff) {
            // Another run may be dropping it at the same moment; either way it goes.
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut *admin).await;
        }
    }
}

/// Defines, for each named scenario `async fn name(store: Store)`, a module `name` with two
/// tests, `sqlite` and `postgres`, that run it on a fresh store of that backend.
#[macro_export]
macro_rules! on_each_backend {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    let (store, _dir) = $crate::common::db::sqlite().await;
                    super::$scenario(store).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::$scenario($crate::common::db::postgres().await).await;
                }
            }
        )*
    };
}

/// The charge of one GSM-7 segment to the US through `twilio`, estimated at 8,300 micros USD
/// from the operator's price table, with no budget hold.
pub fn us_charge() -> herald::store::Charge {
    herald::store::Charge {
        provider: "twilio".to_owned(),
        country: Some("US".to_owned()),
        segments: 1,
        estimate: Some(herald::store::Money::new(8_300, "USD")),
        source: Some("config".to_owned()),
        reason: None,
        holds: Vec::new(),
    }
}

/// A one-segment transactional message for `tenant` to `to`, due now, without a charge.
pub fn new_message(tenant: &str, to: &str) -> herald::store::NewMessage {
    herald::store::NewMessage {
        id: herald::store::new_id("msg"),
        tenant_id: herald::store::TenantId::new(tenant).expect("a valid tenant id"),
        to_number: to.to_owned(),
        sender: None,
        body: "Your code is 123456".to_owned(),
        template_id: None,
        template_version: None,
        category: herald::Category::transactional(),
        encoding: herald::segments::Encoding::Gsm7,
        segments: 1,
        units: 19,
        provider: "twilio".to_owned(),
        max_attempts: 3,
        customer_id: None,
        order_id: None,
        reservation_id: None,
        metadata: None,
        idempotency_key: None,
        request_hash: None,
        due_at: None,
        bulk: false,
        batch_id: None,
        now: now_millis(),
        charge: None,
    }
}

/// A provider's report that the message `lookup` names reached `status` at `now`, from a
/// webhook, with nothing else in it (the provider's own status word is `status`'s name).
pub fn status_report(
    lookup: herald::store::MessageLookup,
    status: herald::store::MessageStatus,
    now: i64,
) -> herald::store::StatusUpdate {
    herald::store::StatusUpdate {
        lookup,
        status,
        provider_status: Some(status.as_str().to_owned()),
        provider_message_id: None,
        error: None,
        segments: None,
        price: None,
        sender: None,
        source: herald::store::EventSource::Webhook,
        now,
    }
}
