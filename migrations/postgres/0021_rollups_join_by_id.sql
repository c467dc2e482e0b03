-- The rollup triggers that read a message join it by its id alone, the primary key.
--
-- They joined on (tenant_id, id). PL/pgSQL keeps a trigger's plan for the session, and a plan
-- made while `messages` was new and small (no statistics yet) could take the tenant_id from
-- any of the indexes that start with it (`messages_batch_recipient`, say) and read every
-- message of the tenant to find one: on a fresh database each charged enqueue scanned the
-- tenant's whole history (measured: 121 million index entries read for 18,000 enqueues, and
-- acceptance over HTTP fell from 1,460 to 610 a second as the table grew, until an ANALYZE).
-- An id is unique across tenants and a cost row or history row always belongs to its
-- message's tenant, so the id alone finds the same row, and only the primary key can serve it.

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
        FROM new_rows c JOIN messages m ON m.id = c.message_id
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
        FROM new_rows c JOIN messages m ON m.id = c.message_id
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
        FROM old_rows o JOIN messages m ON m.id = o.message_id
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
        FROM new_rows c JOIN messages m ON m.id = c.message_id
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
        FROM old_rows o JOIN messages m ON m.id = o.message_id
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
        FROM old_rows o JOIN messages m ON m.id = o.message_id
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
        ON n.message_id = m.id
    WHERE n.status IN ('sent', 'delivered') AND NOT EXISTS (SELECT 1 FROM status_events e WHERE e.tenant_id = n.tenant_id AND e.message_id = n.message_id AND e.status = n.status AND e.id < n.id)
    ) AS d
    GROUP BY tenant_id, name, day, value, kind, bucket;
    RETURN NULL;
END
$$;
