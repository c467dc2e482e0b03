//! Message statuses and the monotonic rule: the order in which a message's status may move, so
//! that late, duplicate and out-of-order provider reports never move a message backwards.

use serde::{Deserialize, Serialize};

/// Where a message is in its life; see [`advance`] for the order statuses move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// A recipient of a draft bulk batch: stored and checked, but not queued until the batch
    /// is sent (then `queued` or `scheduled`).
    Draft,
    /// Accepted by Herald and waiting in the queue.
    Queued,
    /// Accepted by Herald and waiting for its `send_at` time; it becomes `sending` when a
    /// dispatcher claims it at that time, like a queued message.
    Scheduled,
    /// Claimed by a dispatcher, which is calling the provider.
    Sending,
    /// Accepted by the provider.
    Sent,
    /// The provider may or may not have received it; it is never resent blindly.
    Unknown,
    /// The carrier reported delivery to the handset.
    Delivered,
    /// The carrier reported that delivery failed.
    Undelivered,
    /// Herald or the provider gave up on it before the carrier had it.
    Failed,
    /// Withdrawn before it was sent.
    Canceled,
    /// The recipient read it (only some channels report this).
    Read,
}

impl MessageStatus {
    /// Every status, in rank order.
    pub const ALL: [Self; 11] = [
        Self::Draft,
        Self::Queued,
        Self::Scheduled,
        Self::Sending,
        Self::Sent,
        Self::Unknown,
        Self::Delivered,
        Self::Undelivered,
        Self::Failed,
        Self::Canceled,
        Self::Read,
    ];

    /// Returns the status's snake_case name, as stored and as the API shows it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Unknown => "unknown",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Read => "read",
        }
    }

    /// Parses a snake_case status name; `None` for anything else.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Returns how far along the status is: a message only ever moves to a higher rank.
    #[must_use]
    pub const fn rank(self) -> u8 {
        match self {
            Self::Draft | Self::Queued | Self::Scheduled => 0,
            Self::Sending => 1,
            Self::Sent | Self::Unknown => 2,
            Self::Delivered | Self::Undelivered | Self::Failed | Self::Canceled => 3,
            Self::Read => 4,
        }
    }

    /// Returns whether the message is waiting to be sent (`draft`, `queued` or `scheduled`): no
    /// provider has it, and it may still be canceled.
    #[must_use]
    pub const fn is_waiting(self) -> bool {
        matches!(self, Self::Draft | Self::Queued | Self::Scheduled)
    }

    /// Returns whether the status is an outcome that later reports cannot overturn.
    #[must_use]
    pub const fn is_final(self) -> bool {
        self.rank() >= 3
    }
}

impl std::fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returns whether a message in `current` may move to `new`: only to a strictly higher rank, and
/// never out of a final status except `delivered` → `read`.
///
/// Provider callbacks arrive late, twice and out of order; applying every report through this
/// rule makes the stored status independent of their arrival order.
#[must_use]
pub fn advance(current: MessageStatus, new: MessageStatus) -> bool {
    if current.is_final() {
        return current == MessageStatus::Delivered && new == MessageStatus::Read;
    }
    new.rank() > current.rank()
}

/// Returns whether a provider's report (a status callback, or the reconciler's lookup) may move a
/// message in `current` to `new`: [`advance`], except that a waiting (`queued` or `scheduled`)
/// message is never moved.
///
/// A waiting message is not in flight: no provider has been asked to send it, so no provider
/// can know its fate. A report for it is forged or misrouted, and taking it would let a callback
/// skip the provider's acceptance (`queued` → `delivered`) or end the message before it was
/// ever sent. A `sending` message may move: the provider may answer and call back before the
/// dispatcher has recorded its answer.
#[must_use]
pub fn advance_reported(current: MessageStatus, new: MessageStatus) -> bool {
    !current.is_waiting() && advance(current, new)
}

#[cfg(test)]
mod tests {
    use super::MessageStatus::*;
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(MessageStatus::parse("Delivered"), None);
    }

    #[test]
    fn advance_moves_only_forward() {
        assert!(advance(Queued, Sending));
        assert!(advance(Scheduled, Sending));
        assert!(advance(Scheduled, Canceled));
        assert!(!advance(Queued, Scheduled));
        assert!(!advance(Scheduled, Queued));
        assert!(advance(Sending, Sent));
        assert!(advance(Sent, Delivered));
        assert!(advance(Queued, Delivered));
        assert!(!advance(Sent, Sent));
        assert!(!advance(Sent, Unknown));
        assert!(!advance(Sending, Queued));
        assert!(!advance(Unknown, Sent));
    }

    #[test]
    fn final_statuses_never_change_except_delivered_to_read() {
        assert!(advance(Delivered, Read));
        assert!(advance(Sent, Read));
        for final_status in [Delivered, Undelivered, Failed, Canceled] {
            for new in MessageStatus::ALL {
                let allowed = final_status == Delivered && new == Read;
                assert_eq!(
                    advance(final_status, new),
                    allowed,
                    "{final_status} -> {new}"
                );
            }
        }
        for new in MessageStatus::ALL {
            assert!(!advance(Read, new), "read -> {new}");
        }
    }

    /// A provider's report never moves a queued message, whatever it says; from `sending` on it
    /// follows the monotonic rule.
    #[test]
    fn reports_never_move_a_queued_message() {
        for new in MessageStatus::ALL {
            assert!(!advance_reported(Queued, new), "queued -> {new}");
            assert!(!advance_reported(Scheduled, new), "scheduled -> {new}");
        }
        assert!(advance_reported(Sending, Delivered));
        assert!(advance_reported(Sent, Delivered));
        assert!(advance_reported(Delivered, Read));
        assert!(!advance_reported(Delivered, Undelivered));
        for current in MessageStatus::ALL {
            for new in MessageStatus::ALL {
                if !current.is_waiting() {
                    assert_eq!(advance_reported(current, new), advance(current, new));
                }
            }
        }
    }
}
