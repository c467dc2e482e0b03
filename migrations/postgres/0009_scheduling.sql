-- Scheduling (PostgreSQL): send_at, fair claim order, recurring schedules.
-- Mirrors migrations/sqlite/0009_scheduling.sql.

-- When the caller asked the message to go (send_at), NULL for at once. A scheduled message's
-- retry age limit (delivery.max_age_ms) counts from here, not from its creation.
ALTER TABLE messages ADD COLUMN send_at BIGINT;

-- Claim order: lower first. 0 = authentication, transactional (and every other category but
-- marketing) and compliance replies sent one by one; 1 = marketing sent one by one; 2 = the
-- first class sent in bulk; 3 = marketing in bulk. A claim walks each priority's own range of
-- this index by due time, so a backlog of bulk rows never delays a single send, and entries due
-- later (scheduled messages) are never scanned.
ALTER TABLE queue_entries ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
DROP INDEX queue_entries_ready;
CREATE INDEX queue_entries_ready ON queue_entries (priority, due_at) WHERE lease_until IS NULL;

-- Recurring schedules. next_fire_at is the next fire time not yet processed (UTC ms), NULL while
-- paused. A fire time is leased (lease_owner, lease_until) while its messages are created, and
-- next_fire_at moves on only after they all exist; each message's idempotency key names the
-- schedule, the fire time and the recipient, so a fire time repeated after a crash or by a
-- second process creates nothing twice.
CREATE TABLE schedules (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    name               TEXT NOT NULL,
    cron               TEXT NOT NULL,
    timezone           TEXT NOT NULL,
    message            TEXT,
    template_id        TEXT,
    template_variables TEXT NOT NULL,        -- JSON object
    recipients         TEXT,                 -- JSON array of E.164 numbers
    batch_id           TEXT,
    category           TEXT,
    catch_up           INTEGER NOT NULL,     -- 1: a fire time missed by downtime fires late
    paused             INTEGER NOT NULL DEFAULT 0,
    next_fire_at       BIGINT,
    lease_owner        TEXT,
    lease_until        BIGINT,
    last_fired_at      BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE next_fire_at IS NOT NULL;
CREATE INDEX schedules_tenant ON schedules (tenant_id, created_at, id);
