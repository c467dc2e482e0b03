-- Rollups without hot rows (postgres only; SQLite has one writer and keeps its triggers).
--
-- The triggers of 0014 upserted into `rollups` and `latency_rollups` inside every writing
-- transaction. Concurrent sends of one tenant on one day share a rollup row, so each held that
-- row's lock until its commit (WAL flush included): accepting was serialised on it, near 190
-- a second. The triggers now append their changes to `rollup_deltas` and `latency_deltas`,
-- which take inserts without locking anything another writer needs, and the store folds them
-- into the rollups about once a second, in one statement per table (`DELETE ... RETURNING`
-- feeding an upsert), so a reader sees every change exactly once: either still a delta or
-- already folded. Readers go through the views `rollups_now` and `latency_now`, which add the
-- deltas not folded yet (a few seconds of writes at most).

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
CREATE INDEX rollup_deltas_tenant_day ON rollup_deltas (tenant_id, day);

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
CREATE INDEX latency_deltas_tenant_dimension_day ON latency_deltas (tenant_id, dimension, day);

CREATE VIEW rollups_now AS
    SELECT tenant_id, day, provider, category, template_id, country, status, error_code, currency,
           messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros
    FROM rollups
    UNION ALL
    SELECT tenant_id, day, provider, category, template_id, country, status, error_code, currency,
           messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros
    FROM rollup_deltas;

CREATE VIEW latency_now AS
    SELECT tenant_id, dimension, day, value, kind, bucket_ms, messages, total_ms FROM latency_rollups
    UNION ALL
    SELECT tenant_id, dimension, day, value, kind, bucket_ms, messages, total_ms FROM latency_deltas;

CREATE OR REPLACE FUNCTION rollups_message_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Appends the statement's changes; the store's folder adds them into `rollups`.
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT tenant_id, day, provider, category, template_id, country, status, error_code, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM (
        SELECT n.tenant_id,
        n.created_at / 86400000,
        n.provider,
        n.category,
        COALESCE(n.template_id, ''),
        COALESCE(c.country, ''),
        n.status,
        CASE WHEN n.status IN ('failed', 'undelivered') THEN COALESCE(n.error_code, '') ELSE '' END,
        COALESCE(c.actual_currency, c.currency, ''),
        1,
        n.segments,
        (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
        COALESCE(c.actual_micros, 0),
        COALESCE(c.difference_micros, 0),
        COALESCE(c.actual_micros, CASE WHEN n.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END)
        FROM new_rows n LEFT JOIN message_costs c ON c.tenant_id = n.tenant_id AND c.message_id = n.id
    ) AS d (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    GROUP BY tenant_id, day, provider, category, template_id, country, status, error_code, currency
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION rollups_message_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Appends the statement's changes; the store's folder adds them into `rollups`.
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT tenant_id, day, provider, category, template_id, country, status, error_code, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM (
        SELECT o.tenant_id,
        o.created_at / 86400000,
        o.provider,
        o.category,
        COALESCE(o.template_id, ''),
        COALESCE(c.country, ''),
        o.status,
        CASE WHEN o.status IN ('failed', 'undelivered') THEN COALESCE(o.error_code, '') ELSE '' END,
        COALESCE(c.actual_currency, c.currency, ''),
        -1,
        -o.segments,
        -(CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
        -COALESCE(c.actual_micros, 0),
        -COALESCE(c.difference_micros, 0),
        -COALESCE(c.actual_micros, CASE WHEN o.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END)
        FROM old_rows o JOIN new_rows n ON n.id = o.id LEFT JOIN message_costs c ON c.tenant_id = o.tenant_id AND c.message_id = o.id WHERE (o.status, o.created_at, o.provider, o.category, o.segments, o.template_id, o.error_code) IS DISTINCT FROM (n.status, n.created_at, n.provider, n.category, n.segments, n.template_id, n.error_code)
        UNION ALL
        SELECT n.tenant_id,
        n.created_at / 86400000,
        n.provider,
        n.category,
        COALESCE(n.template_id, ''),
        COALESCE(c.country, ''),
        n.status,
        CASE WHEN n.status IN ('failed', 'undelivered') THEN COALESCE(n.error_code, '') ELSE '' END,
        COALESCE(c.actual_currency, c.currency, ''),
        1,
        n.segments,
        (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
        COALESCE(c.actual_micros, 0),
        COALESCE(c.difference_micros, 0),
        COALESCE(c.actual_micros, CASE WHEN n.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END)
        FROM old_rows o JOIN new_rows n ON n.id = o.id LEFT JOIN message_costs c ON c.tenant_id = n.tenant_id AND c.message_id = n.id WHERE (o.status, o.created_at, o.provider, o.category, o.segments, o.template_id, o.error_code) IS DISTINCT FROM (n.status, n.created_at, n.provider, n.category, n.segments, n.template_id, n.error_code)
    ) AS d (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    GROUP BY tenant_id, day, provider, category, template_id, country, status, error_code, currency
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION rollups_message_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Appends the statement's changes; the store's folder adds them into `rollups`.
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT tenant_id, day, provider, category, template_id, country, status, error_code, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM (
        SELECT o.tenant_id,
        o.created_at / 86400000,
        o.provider,
        o.category,
        COALESCE(o.template_id, ''),
        COALESCE(c.country, ''),
        o.status,
        CASE WHEN o.status IN ('failed', 'undelivered') THEN COALESCE(o.error_code, '') ELSE '' END,
        COALESCE(c.actual_currency, c.currency, ''),
        -1,
        -o.segments,
        -(CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
        -COALESCE(c.actual_micros, 0),
        -COALESCE(c.difference_micros, 0),
        -COALESCE(c.actual_micros, CASE WHEN o.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END)
        FROM old_rows o LEFT JOIN message_costs c ON c.tenant_id = o.tenant_id AND c.message_id = o.id
    ) AS d (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    GROUP BY tenant_id, day, provider, category, template_id, country, status, error_code, currency
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION rollups_cost_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Appends the statement's changes; the store's folder adds them into `rollups`.
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT tenant_id, day, provider, category, template_id, country, status, error_code, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM (
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
        FROM new_rows c JOIN messages m ON m.tenant_id = c.tenant_id AND m.id = c.message_id
        UNION ALL
        SELECT m.tenant_id,
        m.created_at / 86400000,
        m.provider,
        m.category,
        COALESCE(m.template_id, ''),
        COALESCE(c.country, ''),
        m.status,
        CASE WHEN m.status IN ('failed', 'undelivered') THEN COALESCE(m.error_code, '') ELSE '' END,
        COALESCE(c.actual_currency, c.currency, ''),
        1,
        m.segments,
        (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
        COALESCE(c.actual_micros, 0),
        COALESCE(c.difference_micros, 0),
        COALESCE(c.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END)
        FROM new_rows c JOIN messages m ON m.tenant_id = c.tenant_id AND m.id = c.message_id
    ) AS d (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    GROUP BY tenant_id, day, provider, category, template_id, country, status, error_code, currency
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION rollups_cost_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Appends the statement's changes; the store's folder adds them into `rollups`.
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT tenant_id, day, provider, category, template_id, country, status, error_code, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM (
        SELECT m.tenant_id,
        m.created_at / 86400000,
        m.provider,
        m.category,
        COALESCE(m.template_id, ''),
        COALESCE(o.country, ''),
        m.status,
        CASE WHEN m.status IN ('failed', 'undelivered') THEN COALESCE(m.error_code, '') ELSE '' END,
        COALESCE(o.actual_currency, o.currency, ''),
        -1,
        -m.segments,
        -(CASE WHEN o.actual_currency IS NULL OR o.actual_currency = o.currency THEN COALESCE(o.estimate_micros, 0) ELSE 0 END),
        -COALESCE(o.actual_micros, 0),
        -COALESCE(o.difference_micros, 0),
        -COALESCE(o.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(o.estimate_micros, 0) END)
        FROM old_rows o JOIN messages m ON m.tenant_id = o.tenant_id AND m.id = o.message_id
        UNION ALL
        SELECT m.tenant_id,
        m.created_at / 86400000,
        m.provider,
        m.category,
        COALESCE(m.template_id, ''),
        COALESCE(c.country, ''),
        m.status,
        CASE WHEN m.status IN ('failed', 'undelivered') THEN COALESCE(m.error_code, '') ELSE '' END,
        COALESCE(c.actual_currency, c.currency, ''),
        1,
        m.segments,
        (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
        COALESCE(c.actual_micros, 0),
        COALESCE(c.difference_micros, 0),
        COALESCE(c.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END)
        FROM new_rows c JOIN messages m ON m.tenant_id = c.tenant_id AND m.id = c.message_id
    ) AS d (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    GROUP BY tenant_id, day, provider, category, template_id, country, status, error_code, currency
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION rollups_cost_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Appends the statement's changes; the store's folder adds them into `rollups`.
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT tenant_id, day, provider, category, template_id, country, status, error_code, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM (
        SELECT m.tenant_id,
        m.created_at / 86400000,
        m.provider,
        m.category,
        COALESCE(m.template_id, ''),
        COALESCE(o.country, ''),
        m.status,
        CASE WHEN m.status IN ('failed', 'undelivered') THEN COALESCE(m.error_code, '') ELSE '' END,
        COALESCE(o.actual_currency, o.currency, ''),
        -1,
        -m.segments,
        -(CASE WHEN o.actual_currency IS NULL OR o.actual_currency = o.currency THEN COALESCE(o.estimate_micros, 0) ELSE 0 END),
        -COALESCE(o.actual_micros, 0),
        -COALESCE(o.difference_micros, 0),
        -COALESCE(o.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(o.estimate_micros, 0) END)
        FROM old_rows o JOIN messages m ON m.tenant_id = o.tenant_id AND m.id = o.message_id
        UNION ALL
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
        FROM old_rows o JOIN messages m ON m.tenant_id = o.tenant_id AND m.id = o.message_id
    ) AS d (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    GROUP BY tenant_id, day, provider, category, template_id, country, status, error_code, currency
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION latency_rollups_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A row trigger limited to `sent` and `delivered` (a statement trigger would run for
    -- every history row only to find nothing to count); appends one row per dimension.
    INSERT INTO latency_deltas (tenant_id, dimension, day, value, kind, bucket_ms, messages, total_ms)
    SELECT tenant_id, name, day, value, kind, bucket, SUM(one), SUM(duration) FROM (
    SELECT m.tenant_id AS tenant_id, dims.name AS name, m.created_at / 86400000 AS day,
        CASE dims.name WHEN 'provider' THEN m.provider WHEN 'category' THEN m.category
            WHEN 'template' THEN COALESCE(m.template_id, '') WHEN 'country' THEN COALESCE(c.country, '')
            ELSE '' END AS value,
        n.status AS kind,
        (SELECT MAX(b.lower_ms) FROM latency_buckets b WHERE b.lower_ms <= GREATEST(n.occurred_at - m.created_at, 0)) AS bucket,
        1 AS one, GREATEST(n.occurred_at - m.created_at, 0) AS duration
    FROM messages m
    LEFT JOIN message_costs c ON c.tenant_id = m.tenant_id AND c.message_id = m.id
    CROSS JOIN (SELECT 'all' AS name UNION ALL SELECT 'provider' UNION ALL SELECT 'category' UNION ALL SELECT 'template' UNION ALL SELECT 'country') AS dims
    JOIN (SELECT NEW.id AS id, NEW.tenant_id AS tenant_id, NEW.message_id AS message_id,
                 NEW.status AS status, NEW.occurred_at AS occurred_at) AS n
        ON n.tenant_id = m.tenant_id AND n.message_id = m.id
    WHERE n.status IN ('sent', 'delivered') AND NOT EXISTS (SELECT 1 FROM status_events e WHERE e.tenant_id = n.tenant_id AND e.message_id = n.message_id AND e.status = n.status AND e.id < n.id)
    ) AS d
    GROUP BY tenant_id, name, day, value, kind, bucket;
    RETURN NULL;
END
$$;
