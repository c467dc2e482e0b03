-- Herald's initial schema (SQLite). Mirrors migrations/postgres/0001_init.sql.
-- Times are UTC milliseconds since the Unix epoch; money is integer micro-units plus a currency
-- code. Every tenant-owned row carries tenant_id, and every query filters on it.

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

INSERT INTO tenants (id, name, created_at)
VALUES ('default', 'Default tenant', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));

CREATE TABLE messages (
    id                  TEXT PRIMARY KEY NOT NULL,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    to_number           TEXT NOT NULL,
    sender              TEXT,
    body                TEXT NOT NULL,
    template_id         TEXT,
    -- Opt-out category: an opt-out in this category (or in 'all') blocks the message;
    -- 'compliance' marks keyword confirmations, which must reach an opted-out number once.
    category            TEXT NOT NULL DEFAULT 'transactional',
    encoding            TEXT NOT NULL,          -- 'GSM-7' or 'UCS-2'
    segments            INTEGER NOT NULL,
    units               INTEGER NOT NULL,
    status              TEXT NOT NULL,          -- see MessageStatus
    provider            TEXT NOT NULL,
    provider_message_id TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL,
    customer_id         TEXT,
    order_id            TEXT,
    reservation_id      TEXT,
    metadata            TEXT,                   -- JSON
    idempotency_key     TEXT,
    request_hash        TEXT,
    price_micros        BIGINT,
    price_currency      TEXT,
    error_code          TEXT,
    error_message       TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (tenant_id, idempotency_key)
);

CREATE INDEX messages_provider_id ON messages (tenant_id, provider, provider_message_id);
CREATE INDEX messages_created ON messages (tenant_id, created_at, id);

-- One row per message still to be attempted. due_at is when the entry may next be claimed: a
-- claim sets it to the end of its lease, so the index finds expired leases too.
CREATE TABLE queue_entries (
    message_id  TEXT PRIMARY KEY NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    tenant_id   TEXT NOT NULL,
    due_at      BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT
);

CREATE INDEX queue_entries_due ON queue_entries (due_at);

CREATE TABLE status_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT NOT NULL,
    message_id      TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    status          TEXT NOT NULL,
    provider_status TEXT,
    error_code      TEXT,
    error_message   TEXT,
    source          TEXT NOT NULL,              -- 'api', 'dispatcher' or 'webhook'
    occurred_at     BIGINT NOT NULL
);

CREATE INDEX status_events_message ON status_events (tenant_id, message_id, occurred_at, id);

CREATE TABLE inbound_messages (
    id                  TEXT PRIMARY KEY NOT NULL,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    provider            TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    from_number         TEXT NOT NULL,
    to_number           TEXT NOT NULL,
    body                TEXT NOT NULL,
    keyword             TEXT,                   -- 'stop', 'start' or 'help'
    received_at         BIGINT NOT NULL,
    UNIQUE (tenant_id, provider, provider_message_id)
);

CREATE TABLE opt_outs (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    phone_number TEXT NOT NULL,
    category     TEXT NOT NULL DEFAULT 'all',   -- 'all' blocks every category
    source       TEXT NOT NULL,
    reason       TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, phone_number, category)
);

CREATE TABLE opt_out_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    category     TEXT NOT NULL,
    action       TEXT NOT NULL,                 -- 'opt_out' or 'opt_in'
    source       TEXT NOT NULL,
    reason       TEXT,
    occurred_at  BIGINT NOT NULL
);

CREATE INDEX opt_out_events_phone ON opt_out_events (tenant_id, phone_number, occurred_at, id);

CREATE TABLE templates (
    id          TEXT PRIMARY KEY NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    category    TEXT,
    description TEXT,
    body        TEXT NOT NULL,
    variables   TEXT NOT NULL DEFAULT '[]',     -- JSON array of names
    is_active   BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
