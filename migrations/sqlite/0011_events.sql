-- The event log (SQLite): one row per thing a dashboard, a live stream or (later) an outbound
-- webhook wants to hear about, written in the same transaction as the change it records.
-- Mirrors migrations/postgres/0011_events.sql.
--
-- id: increasing in commit order (AUTOINCREMENT never reuses an id, and the one writer
-- connection commits in id order), the position a reader resumes after (SSE Last-Event-ID).
-- kind: 'message.status', 'message.inbound', 'opt_out.changed' (more may come).
-- message_id: the message concerned, where there is one.
-- payload: a JSON object, its fields depending on the kind; never secrets.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    message_id TEXT,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A stream reads a tenant's events after an id; /delivery/real-time reads the newest back.
CREATE INDEX events_tenant ON events (tenant_id, id);

-- A bulk row a hard-capped budget refuses takes its draft event out again, by message.
CREATE INDEX events_message ON events (message_id);
