-- Claim order (PostgreSQL): expired leases are taken before the backlog.
-- Mirrors migrations/sqlite/0005_claim_order.sql.
-- A claim sets due_at to the end of its lease, so ordering by due_at alone put an entry whose
-- process died behind every entry due before its lease ended: under a backlog it waited far
-- longer than its lease. A claim now takes expired leases first, then unleased entries by due
-- time; each half walks one of these partial indexes.

CREATE INDEX queue_entries_expiring ON queue_entries (lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX queue_entries_ready ON queue_entries (due_at) WHERE lease_until IS NULL;
