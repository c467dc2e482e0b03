-- The event log's wake-ups move out of the writing transactions (postgres only; SQLite has no
-- notifications). The trigger of 0011 sent `pg_notify('herald_events', '')` inside every
-- transaction that wrote events, and PostgreSQL serialises the commits of notifying
-- transactions (a database-wide lock from pre-commit to the end of the commit, WAL flush
-- included), which capped single sends near 800 a second. The store now notifies after its
-- commits, from one task that coalesces them (see `host/src/store/postgres.rs`).

DROP TRIGGER events_notify ON events;
DROP FUNCTION herald_events_notify();
