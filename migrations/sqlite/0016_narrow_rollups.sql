-- The report rollups, one narrow table per grouping, folded from deltas (sqlite; mirrors migrations/postgres/0017_narrow_rollups.sql).
--
-- 0014 kept one wide table keyed by every report dimension (day x provider x category x
-- template x country x status x failure code x currency), so every report read every key of its
-- period: with a busy tenant's independent draws that was up to 3,450 rows a day, and a
-- 30-day report over 1,000,000 messages took 60-400 ms. Each report now reads a table keyed by
-- only what it keeps apart:
--
-- - `cost_rollups`: day x provider x category x status x currency;
-- - `template_rollups`: day x category x template x status x currency;
-- - `country_rollups`: day x category x country x status x currency;
-- - `failure_rollups`: failed and undelivered messages per failure code, per day and one
--   dimension's value (as `latency_rollups`).
--
-- The triggers append every change to `rollup_deltas` (and the latency histograms' to
-- `latency_deltas`), with the wide key, and the store folds them into the narrow tables about
-- once a second, in one transaction that adds them and removes them. The views `*_now` add
-- the deltas not folded yet, so a report counts every committed change exactly once.
--
-- On SQLite the triggers used to upsert the wide rollups themselves; appending a delta costs the
-- writer less than an upsert into a 9-column key, and the fold's upserts are shared by every
-- change of a second.

CREATE TABLE rollup_deltas (
    tenant_id         TEXT NOT NULL,
    day               BIGINT NOT NULL,
    provider          TEXT NOT NULL,
    category          TEXT NOT NULL,
    template_id       TEXT NOT NULL,
    country           TEXT NOT NULL,
    status            TEXT NOT NULL,
    error_code        TEXT NOT NULL,
    currency          TEXT NOT NULL,
    messages          BIGINT NOT NULL,
    segments          BIGINT NOT NULL,
    estimated_micros  BIGINT NOT NULL,
    actual_micros     BIGINT NOT NULL,
    difference_micros BIGINT NOT NULL,
    cost_micros       BIGINT NOT NULL
);
-- No index: an append is then one write at the end of the table, and the deltas are at most a
-- few seconds of writes, which a report's view scans.

CREATE TABLE latency_deltas (
    tenant_id  TEXT NOT NULL,
    dimension  TEXT NOT NULL,
    day        BIGINT NOT NULL,
    value      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    bucket_ms  BIGINT NOT NULL,
    messages   BIGINT NOT NULL,
    total_ms   BIGINT NOT NULL
);

-- The triggers of 0014, appending instead of upserting.
DROP TRIGGER rollups_message_insert;
DROP TRIGGER rollups_message_update;
DROP TRIGGER rollups_message_delete;
DROP TRIGGER rollups_cost_insert;
DROP TRIGGER rollups_cost_update;
DROP TRIGGER rollups_cost_delete;
DROP TRIGGER latency_rollups_event;

CREATE TRIGGER rollups_message_insert AFTER INSERT ON messages BEGIN
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT NEW.tenant_id,
        NEW.created_at / 86400000,
        NEW.provider,
        NEW.category,
        COALESCE(NEW.template_id, ''),
        COALESCE(c.country, ''),
        NEW.status,
        CASE WHEN NEW.status IN ('failed', 'undelivered') THEN COALESCE(NEW.error_code, '') ELSE '' END,
        COALESCE(c.actual_currency, c.currency, ''),
        1,
        NEW.segments,
        (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
        COALESCE(c.actual_micros, 0),
        COALESCE(c.difference_micros, 0),
        COALESCE(c.actual_micros, CASE WHEN NEW.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END)
    FROM (SELECT 1) AS one LEFT JOIN message_costs c ON c.tenant_id = NEW.tenant_id AND c.message_id = NEW.id;
END;

CREATE TRIGGER rollups_message_update AFTER UPDATE OF status, created_at, provider, category, segments, template_id, error_code ON messages
WHEN OLD.status IS NOT NEW.status OR OLD.created_at IS NOT NEW.created_at OR OLD.provider IS NOT NEW.provider OR OLD.category IS NOT NEW.category OR OLD.segments IS NOT NEW.segments OR OLD.template_id IS NOT NEW.template_id OR OLD.error_code IS NOT NEW.error_code BEGIN
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT OLD.tenant_id,
        OLD.created_at / 86400000,
        OLD.provider,
        OLD.category,
        COALESCE(OLD.template_id, ''),
        COALESCE(c.country, ''),
        OLD.status,
        CASE WHEN OLD.status IN ('failed', 'undelivered') THEN COALESCE(OLD.error_code, '') ELSE '' END,
        COALESCE(c.actual_currency, c.currency, ''),
        -1,
        -OLD.segments,
        -(CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
        -COALESCE(c.actual_micros, 0),
        -COALESCE(c.difference_micros, 0),
        -COALESCE(c.actual_micros, CASE WHEN OLD.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END)
    FROM (SELECT 1) AS one LEFT JOIN message_costs c ON c.tenant_id = OLD.tenant_id AND c.message_id = OLD.id;
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT NEW.tenant_id,
        NEW.created_at / 86400000,
        NEW.provider,
        NEW.category,
        COALESCE(NEW.template_id, ''),
        COALESCE(c.country, ''),
        NEW.status,
        CASE WHEN NEW.status IN ('failed', 'undelivered') THEN COALESCE(NEW.error_code, '') ELSE '' END,
        COALESCE(c.actual_currency, c.currency, ''),
        1,
        NEW.segments,
        (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
        COALESCE(c.actual_micros, 0),
        COALESCE(c.difference_micros, 0),
        COALESCE(c.actual_micros, CASE WHEN NEW.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END)
    FROM (SELECT 1) AS one LEFT JOIN message_costs c ON c.tenant_id = NEW.tenant_id AND c.message_id = NEW.id;
END;

CREATE TRIGGER rollups_message_delete AFTER DELETE ON messages BEGIN
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT OLD.tenant_id,
        OLD.created_at / 86400000,
        OLD.provider,
        OLD.category,
        COALESCE(OLD.template_id, ''),
        COALESCE(c.country, ''),
        OLD.status,
        CASE WHEN OLD.status IN ('failed', 'undelivered') THEN COALESCE(OLD.error_code, '') ELSE '' END,
        COALESCE(c.actual_currency, c.currency, ''),
        -1,
        -OLD.segments,
        -(CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
        -COALESCE(c.actual_micros, 0),
        -COALESCE(c.difference_micros, 0),
        -COALESCE(c.actual_micros, CASE WHEN OLD.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END)
    FROM (SELECT 1) AS one LEFT JOIN message_costs c ON c.tenant_id = OLD.tenant_id AND c.message_id = OLD.id;
END;

CREATE TRIGGER rollups_cost_insert AFTER INSERT ON message_costs BEGIN
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT m.tenant_id,
        m.created_at / 86400000,
        m.provider,
        m.category,
        COALESCE(m.template_id, ''),
        '',
        m.status,
        CASE WHEN m.status IN ('failed', 'undelivered') THEN COALESCE(m.error_code, '') ELSE '' END,
        '',
        -1,
        -m.segments,
        0,
        0,
        0,
        0
    FROM messages m WHERE m.tenant_id = NEW.tenant_id AND m.id = NEW.message_id;
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT m.tenant_id,
        m.created_at / 86400000,
        m.provider,
        m.category,
        COALESCE(m.template_id, ''),
        COALESCE(NEW.country, ''),
        m.status,
        CASE WHEN m.status IN ('failed', 'undelivered') THEN COALESCE(m.error_code, '') ELSE '' END,
        COALESCE(NEW.actual_currency, NEW.currency, ''),
        1,
        m.segments,
        (CASE WHEN NEW.actual_currency IS NULL OR NEW.actual_currency = NEW.currency THEN COALESCE(NEW.estimate_micros, 0) ELSE 0 END),
        COALESCE(NEW.actual_micros, 0),
        COALESCE(NEW.difference_micros, 0),
        COALESCE(NEW.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(NEW.estimate_micros, 0) END)
    FROM messages m WHERE m.tenant_id = NEW.tenant_id AND m.id = NEW.message_id;
END;

CREATE TRIGGER rollups_cost_update AFTER UPDATE ON message_costs BEGIN
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT m.tenant_id,
        m.created_at / 86400000,
        m.provider,
        m.category,
        COALESCE(m.template_id, ''),
        COALESCE(OLD.country, ''),
        m.status,
        CASE WHEN m.status IN ('failed', 'undelivered') THEN COALESCE(m.error_code, '') ELSE '' END,
        COALESCE(OLD.actual_currency, OLD.currency, ''),
        -1,
        -m.segments,
        -(CASE WHEN OLD.actual_currency IS NULL OR OLD.actual_currency = OLD.currency THEN COALESCE(OLD.estimate_micros, 0) ELSE 0 END),
        -COALESCE(OLD.actual_micros, 0),
        -COALESCE(OLD.difference_micros, 0),
        -COALESCE(OLD.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(OLD.estimate_micros, 0) END)
    FROM messages m WHERE m.tenant_id = OLD.tenant_id AND m.id = OLD.message_id;
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT m.tenant_id,
        m.created_at / 86400000,
        m.provider,
        m.category,
        COALESCE(m.template_id, ''),
        COALESCE(NEW.country, ''),
        m.status,
        CASE WHEN m.status IN ('failed', 'undelivered') THEN COALESCE(m.error_code, '') ELSE '' END,
        COALESCE(NEW.actual_currency, NEW.currency, ''),
        1,
        m.segments,
        (CASE WHEN NEW.actual_currency IS NULL OR NEW.actual_currency = NEW.currency THEN COALESCE(NEW.estimate_micros, 0) ELSE 0 END),
        COALESCE(NEW.actual_micros, 0),
        COALESCE(NEW.difference_micros, 0),
        COALESCE(NEW.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(NEW.estimate_micros, 0) END)
    FROM messages m WHERE m.tenant_id = NEW.tenant_id AND m.id = NEW.message_id;
END;

CREATE TRIGGER rollups_cost_delete AFTER DELETE ON message_costs BEGIN
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT m.tenant_id,
        m.created_at / 86400000,
        m.provider,
        m.category,
        COALESCE(m.template_id, ''),
        COALESCE(OLD.country, ''),
        m.status,
        CASE WHEN m.status IN ('failed', 'undelivered') THEN COALESCE(m.error_code, '') ELSE '' END,
        COALESCE(OLD.actual_currency, OLD.currency, ''),
        -1,
        -m.segments,
        -(CASE WHEN OLD.actual_currency IS NULL OR OLD.actual_currency = OLD.currency THEN COALESCE(OLD.estimate_micros, 0) ELSE 0 END),
        -COALESCE(OLD.actual_micros, 0),
        -COALESCE(OLD.difference_micros, 0),
        -COALESCE(OLD.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(OLD.estimate_micros, 0) END)
    FROM messages m WHERE m.tenant_id = OLD.tenant_id AND m.id = OLD.message_id;
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT m.tenant_id,
        m.created_at / 86400000,
        m.provider,
        m.category,
        COALESCE(m.template_id, ''),
        '',
        m.status,
        CASE WHEN m.status IN ('failed', 'undelivered') THEN COALESCE(m.error_code, '') ELSE '' END,
        '',
        1,
        m.segments,
        0,
        0,
        0,
        0
    FROM messages m WHERE m.tenant_id = OLD.tenant_id AND m.id = OLD.message_id;
END;

CREATE TRIGGER latency_rollups_event AFTER INSERT ON status_events
WHEN NEW.status IN ('sent', 'delivered') BEGIN
    INSERT INTO latency_deltas (tenant_id, dimension, day, value, kind, bucket_ms, messages, total_ms)
    SELECT m.tenant_id AS tenant_id, dims.name AS name, m.created_at / 86400000 AS day,
        CASE dims.name WHEN 'provider' THEN m.provider WHEN 'category' THEN m.category
            WHEN 'template' THEN COALESCE(m.template_id, '') WHEN 'country' THEN COALESCE(c.country, '')
            ELSE '' END AS value,
        NEW.status AS kind,
        (SELECT MAX(b.lower_ms) FROM latency_buckets b WHERE b.lower_ms <= MAX(NEW.occurred_at - m.created_at, 0)) AS bucket,
        1 AS one, MAX(NEW.occurred_at - m.created_at, 0) AS duration
    FROM messages m
    LEFT JOIN message_costs c ON c.tenant_id = m.tenant_id AND c.message_id = m.id
    CROSS JOIN (SELECT 'all' AS name UNION ALL SELECT 'provider' UNION ALL SELECT 'category' UNION ALL SELECT 'template' UNION ALL SELECT 'country') AS dims
    WHERE m.tenant_id = NEW.tenant_id AND m.id = NEW.message_id AND NOT EXISTS (SELECT 1 FROM status_events e WHERE e.tenant_id = NEW.tenant_id AND e.message_id = NEW.message_id AND e.status = NEW.status AND e.id < NEW.id);
END;

-- Read by the summary without a group and by day, provider or category, the billing report, and the delivery metrics by those.
CREATE TABLE cost_rollups (
    tenant_id         TEXT NOT NULL,
    day               BIGINT NOT NULL,
    provider          TEXT NOT NULL,
    category          TEXT NOT NULL,
    status            TEXT NOT NULL,
    currency          TEXT NOT NULL,
    messages          BIGINT NOT NULL,
    segments          BIGINT NOT NULL,
    estimated_micros  BIGINT NOT NULL,
    actual_micros     BIGINT NOT NULL,
    difference_micros BIGINT NOT NULL,
    cost_micros       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, provider, category, status, currency)
) WITHOUT ROWID;

-- Read by the summary and the delivery metrics by template, and the most used templates.
CREATE TABLE template_rollups (
    tenant_id         TEXT NOT NULL,
    day               BIGINT NOT NULL,
    category          TEXT NOT NULL,
    template_id       TEXT NOT NULL,
    status            TEXT NOT NULL,
    currency          TEXT NOT NULL,
    messages          BIGINT NOT NULL,
    segments          BIGINT NOT NULL,
    estimated_micros  BIGINT NOT NULL,
    actual_micros     BIGINT NOT NULL,
    difference_micros BIGINT NOT NULL,
    cost_micros       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, category, template_id, status, currency)
) WITHOUT ROWID;

-- Read by the summary and the delivery metrics by country.
CREATE TABLE country_rollups (
    tenant_id         TEXT NOT NULL,
    day               BIGINT NOT NULL,
    category          TEXT NOT NULL,
    country           TEXT NOT NULL,
    status            TEXT NOT NULL,
    currency          TEXT NOT NULL,
    messages          BIGINT NOT NULL,
    segments          BIGINT NOT NULL,
    estimated_micros  BIGINT NOT NULL,
    actual_micros     BIGINT NOT NULL,
    difference_micros BIGINT NOT NULL,
    cost_micros       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, category, country, status, currency)
) WITHOUT ROWID;

-- Failed and undelivered messages per failure code, per tenant x day x one dimension (as the
-- latency histograms: `all`, `provider`, `category`, `template`, `country`) and its value.
CREATE TABLE failure_rollups (
    tenant_id  TEXT NOT NULL,
    dimension  TEXT NOT NULL,
    day        BIGINT NOT NULL,
    value      TEXT NOT NULL,
    error_code TEXT NOT NULL,
    messages   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, dimension, day, value, error_code)
) WITHOUT ROWID;

-- What is already stored.
INSERT INTO cost_rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
SELECT tenant_id, day, provider, category, status, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros), SUM(difference_micros), SUM(cost_micros)
FROM rollups_now
GROUP BY tenant_id, day, provider, category, status, currency;

INSERT INTO template_rollups (tenant_id, day, category, template_id, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
SELECT tenant_id, day, category, template_id, status, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros), SUM(difference_micros), SUM(cost_micros)
FROM rollups_now
GROUP BY tenant_id, day, category, template_id, status, currency;

INSERT INTO country_rollups (tenant_id, day, category, country, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
SELECT tenant_id, day, category, country, status, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros), SUM(difference_micros), SUM(cost_micros)
FROM rollups_now
GROUP BY tenant_id, day, category, country, status, currency;

INSERT INTO failure_rollups (tenant_id, dimension, day, value, error_code, messages)
SELECT r.tenant_id, dims.name, r.day, CASE dims.name WHEN 'provider' THEN r.provider WHEN 'category' THEN r.category WHEN 'template' THEN r.template_id WHEN 'country' THEN r.country ELSE '' END, r.error_code, SUM(r.messages)
FROM rollups_now r CROSS JOIN (SELECT 'all' AS name UNION ALL SELECT 'provider' UNION ALL SELECT 'category' UNION ALL SELECT 'template' UNION ALL SELECT 'country') AS dims
WHERE r.status IN ('failed', 'undelivered')
GROUP BY 1, 2, 3, 4, 5;

DROP VIEW rollups_now;
DROP TABLE rollups;

DROP VIEW latency_now;
CREATE VIEW latency_now AS
    SELECT tenant_id, dimension, day, value, kind, bucket_ms, messages, total_ms FROM latency_rollups
    UNION ALL
    SELECT tenant_id, dimension, day, value, kind, bucket_ms, messages, total_ms FROM latency_deltas;

CREATE VIEW cost_rollups_now AS
    SELECT tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros FROM cost_rollups
    UNION ALL
    SELECT tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros FROM rollup_deltas;

CREATE VIEW template_rollups_now AS
    SELECT tenant_id, day, category, template_id, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros FROM template_rollups
    UNION ALL
    SELECT tenant_id, day, category, template_id, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros FROM rollup_deltas;

CREATE VIEW country_rollups_now AS
    SELECT tenant_id, day, category, country, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros FROM country_rollups
    UNION ALL
    SELECT tenant_id, day, category, country, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros FROM rollup_deltas;

CREATE VIEW failure_rollups_now AS
    SELECT tenant_id, dimension, day, value, error_code, messages FROM failure_rollups
    UNION ALL
    SELECT d.tenant_id, dims.name, d.day, CASE dims.name WHEN 'provider' THEN d.provider WHEN 'category' THEN d.category WHEN 'template' THEN d.template_id WHEN 'country' THEN d.country ELSE '' END, d.error_code, d.messages
    FROM rollup_deltas d CROSS JOIN (SELECT 'all' AS name UNION ALL SELECT 'provider' UNION ALL SELECT 'category' UNION ALL SELECT 'template' UNION ALL SELECT 'country') AS dims
    WHERE d.status IN ('failed', 'undelivered');
