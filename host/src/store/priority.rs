//! The order in which due queue entries are claimed: a priority set at enqueue from the message's
//! category and whether it was sent alone or in bulk, lower first, then by due time.
//!
//! Why: a batch of 100,000 rows is due all at once, and claiming by due time alone would put a
//! single `/send` accepted a second later behind every one of them. Single sends therefore go
//! ahead of bulk rows, and within each, `authentication`, `transactional` and the `compliance`
//! replies ahead of `marketing`. Each priority walks its own range of the `queue_entries_ready`
//! index (migration 0009), so the claim stays index-driven however deep the backlog.

use crate::domain::Category;

/// Where a queue entry stands in the claim order; lower is claimed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClaimPriority {
    /// Sent alone, any category but `marketing` (authentication codes, transactional
    /// messages, compliance replies, custom categories).
    Single = 0,
    /// Sent alone, `marketing`.
    SingleMarketing = 1,
    /// A bulk row, any category but `marketing`.
    Bulk = 2,
    /// A bulk row, `marketing`.
    BulkMarketing = 3,
}

impl ClaimPriority {
    /// The stored name of the category that goes last in its group.
    pub const MARKETING: &'static str = "marketing";

    /// Every priority, in claim order.
    pub const ALL: [Self; 4] = [
        Self::Single,
        Self::SingleMarketing,
        Self::Bulk,
        Self::BulkMarketing,
    ];

    /// The priority of a message of `category`, sent alone or (`bulk`) as a row of a batch.
    #[must_use]
    pub fn of(category: &Category, bulk: bool) -> Self {
        let marketing = category.as_str() == Self::MARKETING;
        match (bulk, marketing) {
            (false, false) => Self::Single,
            (false, true) => Self::SingleMarketing,
            (true, false) => Self::Bulk,
            (true, true) => Self::BulkMarketing,
        }
    }

    /// The value stored in `queue_entries.priority`.
    #[must_use]
    pub const fn as_i32(self) -> i32 {
        self as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Single sends go before bulk rows; within each, marketing goes last.
    #[test]
    fn single_sends_and_urgent_categories_go_first() {
        let named = |name: &str| Category::for_message(name).unwrap();
        assert_eq!(
            ClaimPriority::of(&named("authentication"), false),
            ClaimPriority::Single
        );
        assert_eq!(
            ClaimPriority::of(&Category::Compliance, false),
            ClaimPriority::Single
        );
        assert_eq!(
            ClaimPriority::of(&named("marketing"), false),
            ClaimPriority::SingleMarketing
        );
        assert_eq!(
            ClaimPriority::of(&named("transactional"), true),
            ClaimPriority::Bulk
        );
        assert_eq!(
            ClaimPriority::of(&named("marketing"), true),
            ClaimPriority::BulkMarketing
        );
        assert!(ClaimPriority::SingleMarketing < ClaimPriority::Bulk);
        let stored: Vec<i32> = ClaimPriority::ALL.iter().map(|p| p.as_i32()).collect();
        assert_eq!(stored, [0, 1, 2, 3]);
    }
}
