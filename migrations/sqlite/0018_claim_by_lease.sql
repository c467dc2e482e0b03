-- A claim finds the entries it just leased by their lease token in the statements that follow
-- its lease (one round trip on SQLite). Only leased entries are indexed: the queue's backlog
-- (lease_owner NULL) adds nothing to this index, and a lookup `lease_owner = ?` implies the
-- index's condition.
CREATE INDEX queue_entries_by_lease ON queue_entries (lease_owner) WHERE lease_owner IS NOT NULL;
