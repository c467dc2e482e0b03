-- Reconciliation of lost status callbacks (SQLite).
-- Mirrors migrations/postgres/0004_reconcile.sql.
-- reconciled_at: when the reconciler last asked the provider about the message (NULL: never).
-- reconcile_error: set when the provider said it can never report the message; no more asks.
-- status_events.source gains 'reconcile' for the changes the reconciler records.

ALTER TABLE messages ADD COLUMN reconciled_at BIGINT;
ALTER TABLE messages ADD COLUMN reconcile_error TEXT;

-- The reconciler looks only at recent messages still waiting for a final status.
CREATE INDEX messages_reconcile ON messages (created_at) WHERE status IN ('sent', 'unknown');
