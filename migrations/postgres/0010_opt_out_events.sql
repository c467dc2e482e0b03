-- Mirrors migrations/sqlite/0010_opt_out_events.sql.
-- The opt-out list's audit trail as a compliance export needs it: how each change was made and
-- which message caused it; plus the indexes of the opt-out, audit and inbound listings.
--
-- method: 'keyword' (STOP / START texted in), 'api', 'import' (CSV upload) or 'provider' (the
-- provider refused a send because the number unsubscribed at its end). It replaces the free-form
-- `source` column ('inbound' was a keyword, 'provider' the provider, anything else the API).
-- source_message_id: the inbound message of a keyword, or the outbound message whose provider
-- reported the opt-out. customer_id: the caller's reference given with an API opt-out.

ALTER TABLE opt_out_events ADD COLUMN method TEXT NOT NULL DEFAULT 'api';
ALTER TABLE opt_out_events ADD COLUMN source_message_id TEXT;
ALTER TABLE opt_out_events ADD COLUMN customer_id TEXT;
UPDATE opt_out_events
SET method = CASE source WHEN 'inbound' THEN 'keyword' WHEN 'provider' THEN 'provider' ELSE 'api' END;
ALTER TABLE opt_out_events DROP COLUMN source;

ALTER TABLE opt_outs ADD COLUMN method TEXT NOT NULL DEFAULT 'api';
ALTER TABLE opt_outs ADD COLUMN source_message_id TEXT;
ALTER TABLE opt_outs ADD COLUMN customer_id TEXT;
UPDATE opt_outs
SET method = CASE source WHEN 'inbound' THEN 'keyword' WHEN 'provider' THEN 'provider' ELSE 'api' END;
ALTER TABLE opt_outs DROP COLUMN source;

-- GET /opt-outs: newest first per tenant. The export walks events by id per tenant.
CREATE INDEX opt_outs_created ON opt_outs (tenant_id, created_at, phone_number, category);
CREATE INDEX opt_out_events_tenant ON opt_out_events (tenant_id, id);
-- GET /inbound: newest first per tenant.
CREATE INDEX inbound_messages_received ON inbound_messages (tenant_id, received_at, id);
