-- The compliance actions taken on inbound messages, keyed by a key the host derives (tenant,
-- provider, the webhook request that carried the message, sender and recipient), never by the
-- id a provider plugin reports: one inbound message triggers at most one opt-out change and one
-- confirmation, whatever ids the plugin chooses.

CREATE TABLE inbound_actions (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    action_key TEXT NOT NULL,
    inbound_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, action_key)
);
