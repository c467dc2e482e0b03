//! A per-tenant cache of what every send and attempt reads but seldom changes: the tenant's
//! settings document and its budgets.
//!
//! Why: a send read both (its routing, its price table, the budgets that reserve), and an attempt
//! read the settings again: two to four reads per message, each a round trip, for data that
//! changes a few times a day.
//!
//! - **This process's writes** (settings, budgets) empty the cache once they commit. A read that
//!   began before such a write does not fill the cache with what it read (an epoch tells).
//! - **Other processes' writes** (PostgreSQL) reach it through a notification
//!   (`herald_profiles`), sent after their commit; a listener that lost its connection empties
//!   the cache too, as notifications may have been missed.
//! - **Anything else** (a change made in SQL by hand) is seen within [`TTL`].
//!
//! A hard cap does not depend on the cache: the reservation reads the budget's limit in its own
//! statement.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::budgets::StoredBudget;
use super::model::StoredSettings;

/// How long an entry serves before it is read again, whatever happened.
pub(super) const TTL: Duration = Duration::from_secs(5);

/// The cached profiles of every tenant.
#[derive(Debug, Default)]
pub(super) struct Profiles {
    /// Moves on at every invalidation: a read that began in an older epoch fills nothing.
    epoch: AtomicU64,
    settings: Mutex<HashMap<String, (Instant, Option<StoredSettings>)>>,
    budgets: Mutex<HashMap<String, (Instant, Vec<StoredBudget>)>>,
}

/// A read in progress: where to put its result if nothing changed meanwhile.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket(u64);

impl Profiles {
    /// Forgets every entry: something changed (here or in another process).
    pub(super) fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        lock(&self.settings).clear();
        lock(&self.budgets).clear();
    }

    /// Starts a read: take the ticket before reading the database.
    pub(super) fn ticket(&self) -> Ticket {
        Ticket(self.epoch.load(Ordering::Acquire))
    }

    /// `tenant`'s cached settings, if fresh.
    pub(super) fn settings(&self, tenant: &str) -> Option<Option<StoredSettings>> {
        fresh(&self.settings, tenant)
    }

    /// `tenant`'s cached budgets, if fresh.
    pub(super) fn budgets(&self, tenant: &str) -> Option<Vec<StoredBudget>> {
        fresh(&self.budgets, tenant)
    }

    /// Keeps `settings`, read with `ticket`, unless something changed since.
    pub(super) fn keep_settings(
        &self,
        ticket: Ticket,
        tenant: &str,
        settings: &Option<StoredSettings>,
    ) {
        self.keep(&self.settings, ticket, tenant, settings.clone());
    }

    /// Keeps `budgets`, read with `ticket`, unless something changed since.
    pub(super) fn keep_budgets(&self, ticket: Ticket, tenant: &str, budgets: &[StoredBudget]) {
        self.keep(&self.budgets, ticket, tenant, budgets.to_vec());
    }

    fn keep<T>(
        &self,
        map: &Mutex<HashMap<String, (Instant, T)>>,
        ticket: Ticket,
        tenant: &str,
        value: T,
    ) {
        let mut entries = lock(map);
        // Checked under the map's lock, which `invalidate` takes after moving the epoch on:
        // either this sees the new epoch, or `invalidate` clears what this inserts.
        if self.epoch.load(Ordering::Acquire) == ticket.0 {
            entries.insert(tenant.to_owned(), (Instant::now(), value));
        }
    }
}

fn fresh<T: Clone>(map: &Mutex<HashMap<String, (Instant, T)>>, tenant: &str) -> Option<T> {
    let entries = lock(map);
    let (at, value) = entries.get(tenant)?;
    (at.elapsed() < TTL).then(|| value.clone())
}

/// The map, even if a thread panicked holding it (its entries are plain values, always whole).
fn lock<T>(map: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(text: &str) -> Option<StoredSettings> {
        Some(StoredSettings {
            settings: text.to_owned(),
            updated_at: 1,
        })
    }

    #[test]
    fn a_read_that_began_before_an_invalidation_is_not_kept() {
        let profiles = Profiles::default();
        assert_eq!(profiles.settings("t"), None, "nothing cached yet");
        let ticket = profiles.ticket();
        profiles.keep_settings(ticket, "t", &stored("{}"));
        assert_eq!(profiles.settings("t"), Some(stored("{}")));

        // A read starts, a write commits and invalidates, then the read ends with the old value.
        let stale = profiles.ticket();
        profiles.invalidate();
        assert_eq!(profiles.settings("t"), None, "the write emptied the cache");
        profiles.keep_settings(stale, "t", &stored("{\"old\":1}"));
        assert_eq!(
            profiles.settings("t"),
            None,
            "the older read filled nothing"
        );

        let ticket = profiles.ticket();
        profiles.keep_budgets(ticket, "t", &[]);
        assert_eq!(profiles.budgets("t"), Some(Vec::new()));
        assert_eq!(profiles.budgets("u"), None, "entries are per tenant");
    }
}
