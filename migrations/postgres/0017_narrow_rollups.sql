-- The report rollups, one narrow table per grouping, folded from deltas (postgres; mirrors migrations/sqlite/0016_narrow_rollups.sql).
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
-- The triggers already append deltas here (0016); only the tables they are folded into change.

-- No writer may add a delta between the copy below and the clearing of the deltas.
LOCK TABLE rollup_deltas IN EXCLUSIVE MODE;

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
);

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
);

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
);

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
);

-- What is already stored, folded or not.
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

DELETE FROM rollup_deltas;
DROP VIEW rollups_now;
DROP TABLE rollups;

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
