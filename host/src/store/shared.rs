//! Plain helpers the shared queries use: the page sizes, the status change and provider facts
//! they write, and the conversions between stored columns and model values (counts, statuses,
//! encodings, snake_case names, JSON).

use super::error::{Result, StoreError};
use super::model::{ErrorInfo, EventSource, MessageStatus, Money, Page};
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
    /// Stored as `provider_segments`: Herald's own `segments` count is never replaced.
    pub(super) provider_segments: Option<u32>,
    pub(super) price: Option<&'a Money>,
    /// Stored only when the message names no sender: the one it was queued with stays.
    pub(super) sender: Option<&'a str>,
}

impl Facts<'_> {
    pub(super) fn is_empty(&self) -> bool {
        self.provider_message_id.is_none()
            && self.provider_segments.is_none()
            && self.price.is_none()
            && self.sender.is_none()
    }
}

/// Converts a count for an `INTEGER` column; counts beyond `i32::MAX` are clamped, not refused.
/// The statuses a message may move to `to` from ([`advance`](super::model::advance)), as a
/// quoted SQL list for `status IN (…)`.
pub(super) fn statuses_before(to: MessageStatus) -> String {
    MessageStatus::ALL
        .iter()
        .filter(|status| super::model::advance(**status, to))
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

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

/// Parses a stored tenant id.
pub(super) fn tenant(id: String) -> Result<crate::domain::TenantId> {
    crate::domain::TenantId::new(id).map_err(|_| StoreError::Corrupt("tenant_id".into()))
}

/// Parses a stored category name.
pub(super) fn category(name: String) -> Result<crate::domain::Category> {
    crate::domain::Category::parse(&name)
        .map_err(|_| StoreError::Corrupt(format!("category {name:?}")))
}

/// The page size a listing asks for (`limit`), within 1 and [`MAX_PAGE`] ([`DEFAULT_PAGE`] when
/// not given).
pub(super) fn page_size(limit: Option<u32>) -> u32 {
    limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
}

/// One page of a keyset listing that fetched `limit + 1` rows: the extra row, when it came, is
/// cut and says another page follows, whose cursor `position` makes from the last row kept.
pub(super) fn paged<T>(mut items: Vec<T>, limit: u32, position: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = more.then(|| items.last().map(&position)).flatten();
    Page { items, next_cursor }
}
