-- Bulk batches (sqlite). Mirrors migrations/postgres/0008_batches.sql.
-- A batch groups the messages of one bulk send. Its messages are ordinary message rows carrying
-- batch_id; a draft batch's messages are stored, validated and rendered, but get their queue
-- entries only when the batch is sent. Counts by status are read from the messages, never
-- stored twice.

CREATE TABLE batches (
    id               TEXT PRIMARY KEY NOT NULL,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    name             TEXT,
    status           TEXT NOT NULL,              -- 'draft', 'sending' or 'canceled'
    category         TEXT,
    template_id      TEXT,                       -- for rows that name no content
    template_variables TEXT,                     -- JSON object: defaults under each row's
    allow_duplicates BOOLEAN NOT NULL DEFAULT FALSE,
    send_at          BIGINT,                     -- when its messages are due; NULL for now
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,                     -- when its messages were queued
    canceled_at      BIGINT,
    updated_at       BIGINT NOT NULL
);

CREATE INDEX batches_created ON batches (tenant_id, created_at, id);

ALTER TABLE messages ADD COLUMN batch_id TEXT;
-- The recipient a batch sends to once: its number, or NULL when the batch allows duplicates
-- (NULLs never collide in a unique index, on either backend).
ALTER TABLE messages ADD COLUMN batch_recipient TEXT;

CREATE UNIQUE INDEX messages_batch_recipient ON messages (tenant_id, batch_id, batch_recipient);
CREATE INDEX messages_batch ON messages (tenant_id, batch_id, created_at, id);
