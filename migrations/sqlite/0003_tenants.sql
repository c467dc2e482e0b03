-- Tenants as entities: a status (a suspended tenant's sends are refused and its queue is held),
-- API keys stored as SHA-256 hashes with a short visible prefix, per-tenant settings (a JSON
-- document: routing, plugin settings that override the operator's, owned numbers), and the
-- numbers each tenant owns, which route inbound messages to it.

ALTER TABLE tenants ADD COLUMN status TEXT NOT NULL DEFAULT 'active';

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    prefix     TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE tenant_settings (
    tenant_id  TEXT PRIMARY KEY NOT NULL REFERENCES tenants (id),
    settings   TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE tenant_numbers (
    phone_number TEXT PRIMARY KEY NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id)
);
CREATE INDEX tenant_numbers_tenant ON tenant_numbers (tenant_id);
