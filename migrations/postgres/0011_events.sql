-- The event log (PostgreSQL): one row per thing a dashboard, a live stream or (later) an
-- outbound webhook wants to hear about, written in the same transaction as the change it
-- records. Mirrors migrations/sqlite/0011_events.sql.
--
-- id: from a sequence, so ids are handed out in order but may commit out of order; readers
-- only read up to a horizon below which every id is committed or rolled back (see
-- host/src/store/events.rs), so a reader resuming after an id never skips one.
-- kind: 'message.status', 'message.inbound', 'opt_out.changed' (more may come).
-- message_id: the message concerned, where there is one.
-- payload: a JSON object (as text, as on SQLite), its fields depending on the kind; never
-- secrets.
CREATE TABLE events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    message_id TEXT,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A stream reads a tenant's events after an id; /delivery/real-time reads the newest back.
CREATE INDEX events_tenant ON events (tenant_id, id);

-- Wakes the streams of every process when a transaction that wrote events commits (a NOTIFY is
-- delivered at commit, and identical ones in one transaction are sent once). One per
-- statement, so a bulk insert costs one.
CREATE FUNCTION herald_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION herald_events_notify();

-- A bulk row a hard-capped budget refuses takes its draft event out again, by message.
CREATE INDEX events_message ON events (message_id);
