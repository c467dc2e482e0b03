-- Template versions and soft deletion (PostgreSQL). Mirrors migrations/sqlite/0007_template_versions.sql.
--
-- Every change of a template's text, description or category is a new, immutable row of
-- template_versions; templates keeps a copy of its current version (current_version says which)
-- so that reading and rendering a template stays one row. A message records the version it was
-- rendered from (messages.template_version).
--
-- A deleted template keeps its row and its versions (deleted_at is set), so the history of the
-- messages sent from it stays readable; its name is free again, so names are unique among the
-- templates that are not deleted only.

ALTER TABLE templates DROP CONSTRAINT templates_tenant_id_name_key;
ALTER TABLE templates ADD COLUMN current_version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE templates ADD COLUMN deleted_at BIGINT;

CREATE UNIQUE INDEX templates_live_name ON templates (tenant_id, name) WHERE deleted_at IS NULL;
CREATE INDEX templates_created ON templates (tenant_id, created_at, id);

CREATE TABLE template_versions (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    template_id TEXT NOT NULL REFERENCES templates (id),
    version     BIGINT NOT NULL,
    category    TEXT,
    description TEXT,
    body        TEXT NOT NULL,
    variables   TEXT NOT NULL DEFAULT '[]',
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, template_id, version)
);

INSERT INTO template_versions (tenant_id, template_id, version, category, description, body,
    variables, created_at)
SELECT tenant_id, id, 1, category, description, body, variables, created_at FROM templates;

ALTER TABLE messages ADD COLUMN template_version BIGINT;
