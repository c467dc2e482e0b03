//! Identifiers and clocks: time-sortable ids, the current time in storage units, and the opaque
//! cursor of keyset pagination.

use std::sync::Mutex;

use super::error::{Result, StoreError};

/// Crockford's base-32 alphabet, lower-cased: ASCII order is numeric order, so ids sort by time.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const RANDOM_BITS: u32 = 80;
const RANDOM_MASK: u128 = (1 << RANDOM_BITS) - 1;

/// The last id's timestamp and random part, so ids minted in one millisecond still increase.
static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));

/// Mints an id `"{prefix}_"` + 26 characters (a ULID: 48 bits of milliseconds, 80 random bits).
///
/// Ids sort by creation time, and strictly increase within one process even inside one
/// millisecond or when the clock steps back, which keeps `(created_at, id)` ordering stable.
#[must_use]
pub fn new_id(prefix: &str) -> String {
    let now = u64::try_from(now_millis()).unwrap_or(0);
    let (millis, random) = {
        // A poisoned lock still holds a valid pair: the critical section cannot panic midway.
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = if now > last.0 {
            (now, rand::random::<u128>() & RANDOM_MASK)
        } else if last.1 < RANDOM_MASK {
            (last.0, last.1 + 1)
        } else {
            (last.0 + 1, 0)
        };
        *last = next;
        next
    };
    let value = (u128::from(millis) << RANDOM_BITS) | random;
    let mut id = String::with_capacity(prefix.len() + 27);
    id.push_str(prefix);
    id.push('_');
    for index in (0..26).rev() {
        let digit = (value >> (index * 5)) & 0x1f;
        id.push(char::from(ALPHABET[digit as usize]));
    }
    id
}

/// Returns the current UTC time in milliseconds since the Unix epoch: the unit of stored times.
#[must_use]
pub fn now_millis() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

/// Returns a lease token for one claim by `worker`: unique, so a worker that claims the same
/// entry again after its lease expired cannot complete it with the older claim's token.
pub(crate) fn lease_token(worker: &str) -> String {
    new_id(worker)
}

/// Encodes the keyset position `(created_at, id)` of the last row of a page.
pub(crate) fn encode_cursor(created_at: i64, id: &str) -> String {
    format!("{created_at}:{id}")
        .bytes()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Decodes a cursor made by [`encode_cursor`].
pub(crate) fn decode_cursor(cursor: &str) -> Result<(i64, String)> {
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|at| {
            cursor
                .get(at..at + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or(StoreError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)?;
    let (created_at, id) = text.split_once(':').ok_or(StoreError::InvalidCursor)?;
    let created_at = created_at.parse().map_err(|_| StoreError::InvalidCursor)?;
    Ok((created_at, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_prefix_and_increase() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("msg")).collect();
        assert!(
            ids.iter()
                .all(|id| id.len() == 30 && id.starts_with("msg_"))
        );
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = encode_cursor(1_700_000_000_123, "msg_01abc");
        assert_eq!(
            decode_cursor(&cursor).ok(),
            Some((1_700_000_000_123, "msg_01abc".to_owned()))
        );
        for bad in ["zz", "abc", "", "3a"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
