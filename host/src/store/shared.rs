//! What the backends share: plain helpers for reading and writing rows, and the macro that
//! expands the shared queries ([`messages`](super::messages), [`queue`](super::queue),
//! [`records`](super::records)) over one backend's `sqlx` database type.
//!
//! SQLite and PostgreSQL both take `$1` placeholders, `RETURNING` and `ON CONFLICT ... DO
//! NOTHING`, so the SQL is written once; only these differ and are passed in by the backend:
//! - `begin`: how a write transaction starts (`BEGIN IMMEDIATE` takes SQLite's write lock up
//!   front instead of failing to upgrade a read lock later);
//! - `lock`: the suffix that locks a message row for a read-decide-write (PostgreSQL's `FOR
//!   UPDATE`; SQLite needs none, its single writer connection already serialises writers);
//! - `claim`: the statement that leases due queue entries;
//! - `notify`: an optional statement run in the enqueue transaction to wake other processes.
//!
//! Macros rather than functions generic over `sqlx::Database`: the generic form needs a long list
//! of encode/decode bounds on every function, while each expansion here is concrete code.

use super::error::{Result, StoreError};
use super::model::{ErrorInfo, EventSource, MessageStatus, Money};
use crate::segments::Encoding;

/// The largest page [`list_messages`](super::Store::list_messages) returns.
pub(super) const MAX_PAGE: u32 = 500;
/// The page size when the filter names none.
pub(super) const DEFAULT_PAGE: u32 = 50;

/// A status change to write: the message row update and the event that records it.
pub(super) struct Change<'a> {
    pub(super) status: MessageStatus,
    pub(super) provider_status: Option<&'a str>,
    pub(super) error: Option<&'a ErrorInfo>,
    pub(super) source: EventSource,
    pub(super) now: i64,
}

impl<'a> Change<'a> {
    /// A change made by a dispatcher attempt.
    pub(super) fn dispatcher(
        status: MessageStatus,
        error: Option<&'a ErrorInfo>,
        now: i64,
    ) -> Self {
        Self {
            status,
            provider_status: None,
            error,
            source: EventSource::Dispatcher,
            now,
        }
    }
}

/// What a provider reported about a message that is stored whatever its status.
pub(super) struct Facts<'a> {
    pub(super) provider_message_id: Option<&'a str>,
    pub(super) segments: Option<u32>,
    pub(super) price: Option<&'a Money>,
}

impl Facts<'_> {
    pub(super) fn is_empty(&self) -> bool {
        self.provider_message_id.is_none() && self.segments.is_none() && self.price.is_none()
    }
}

/// Converts a count for an `INTEGER` column; counts beyond `i32::MAX` are clamped, not refused.
pub(super) fn db_int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Reads back a count stored by [`db_int`].
pub(super) fn count(value: i32, column: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} = {value}")))
}

/// Parses a stored message status.
pub(super) fn status(name: &str) -> Result<MessageStatus> {
    MessageStatus::parse(name).ok_or_else(|| StoreError::Corrupt(format!("status {name:?}")))
}

/// Parses a stored encoding name.
pub(super) fn encoding(name: &str) -> Result<Encoding> {
    [Encoding::Gsm7, Encoding::Ucs2]
        .into_iter()
        .find(|encoding| encoding.as_str() == name)
        .ok_or_else(|| StoreError::Corrupt(format!("encoding {name:?}")))
}

/// Parses a stored snake_case enum (event source, keyword, opt-out action) through serde.
pub(super) fn word<T: serde::de::DeserializeOwned>(name: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("value {name:?}")))
}

/// Returns the snake_case name a serde enum serialises to.
pub(super) fn name_of<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// Combines the two error columns; `None` when both are empty.
pub(super) fn error_info(code: Option<String>, message: Option<String>) -> Option<ErrorInfo> {
    (code.is_some() || message.is_some()).then_some(ErrorInfo { code, message })
}

/// Parses a stored JSON column.
pub(super) fn json<T: serde::de::DeserializeOwned>(text: &str, column: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(format!("{column}: {error}")))
}

/// Expands every shared query over one backend; see the module documentation.
macro_rules! backend_queries {
    (
        db = $Db:ident,
        begin = $begin:literal,
        lock = $lock:literal,
        claim = $claim:literal $(,)?
        $(notify = $notify:literal $(,)?)?
    ) => {
        use sqlx::Row as _;

        use super::error::{Result, StoreError};
        use super::ids::{decode_cursor, encode_cursor, lease_token};
        use super::model::*;
        use super::shared::*;

        type Pool = sqlx::Pool<sqlx::$Db>;
        type Conn = <sqlx::$Db as sqlx::Database>::Connection;
        type DbRow = <sqlx::$Db as sqlx::Database>::Row;

        super::messages::message_queries!(begin = $begin, lock = $lock $(, notify = $notify)?);
        super::queue::queue_queries!(begin = $begin, lock = $lock, claim = $claim);
        super::records::record_queries!(begin = $begin);
    };
}

pub(super) use backend_queries;
