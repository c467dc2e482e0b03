-- Rollups (postgres). Mirrors migrations/sqlite/0013_rollups.sql.
-- The counts and money of a tenant's messages per UTC day (created_at / 86400000) x provider x
-- category x status x currency ('' for messages with no price), kept by triggers in the same
-- transaction as every change to `messages` (insert, status, provider, delete) and to
-- `message_costs` (estimate, actual price): each trigger subtracts the row's old contribution
-- and adds its new one, so the rollups equal an aggregate over messages LEFT JOIN
-- message_costs, whatever path (single send, bulk chunk, dispatcher, callback) made the change.
-- Money: estimated (where in the actual's currency), actual (every attempt), difference
-- (actual - estimate) and cost (actual, else estimate; nothing for failed or canceled).

CREATE TABLE rollups (
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

-- What is already stored.
INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status,
       COALESCE(c.actual_currency, c.currency, ''), COUNT(*), SUM(m.segments),
       SUM(CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
       SUM(COALESCE(c.actual_micros, 0)), SUM(COALESCE(c.difference_micros, 0)),
       SUM(COALESCE(c.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END))
FROM messages m
LEFT JOIN message_costs c ON c.tenant_id = m.tenant_id AND c.message_id = m.id
GROUP BY m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status,
         COALESCE(c.actual_currency, c.currency, '');

CREATE FUNCTION rollups_message_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One set-based upsert per statement, its rows in key order so that concurrent writers
    -- take the rollup rows' locks in the same order.
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT tenant_id, day, provider, category, status, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM (
        SELECT n.tenant_id, n.created_at / 86400000, n.provider, n.category, n.status, COALESCE(c.actual_currency, c.currency, ''),
    1, n.segments, (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
    COALESCE(c.actual_micros, 0), COALESCE(c.difference_micros, 0),
    (COALESCE(c.actual_micros, CASE WHEN n.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END))
        FROM new_rows n LEFT JOIN message_costs c ON c.tenant_id = n.tenant_id AND c.message_id = n.id
    ) AS d (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    GROUP BY tenant_id, day, provider, category, status, currency
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0
    ORDER BY tenant_id, day, provider, category, status, currency
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
    RETURN NULL;
END
$$;
CREATE TRIGGER rollups_message_insert AFTER INSERT ON messages
    REFERENCING  NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rollups_message_insert();

CREATE FUNCTION rollups_message_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One set-based upsert per statement, its rows in key order so that concurrent writers
    -- take the rollup rows' locks in the same order.
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT tenant_id, day, provider, category, status, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM (
        SELECT o.tenant_id, o.created_at / 86400000, o.provider, o.category, o.status, COALESCE(c.actual_currency, c.currency, ''),
    -1, -o.segments, -(CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
    -COALESCE(c.actual_micros, 0), -COALESCE(c.difference_micros, 0),
    -(COALESCE(c.actual_micros, CASE WHEN o.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END))
        FROM old_rows o JOIN new_rows n ON n.id = o.id LEFT JOIN message_costs c ON c.tenant_id = o.tenant_id AND c.message_id = o.id WHERE (o.status, o.created_at, o.provider, o.category, o.segments) IS DISTINCT FROM (n.status, n.created_at, n.provider, n.category, n.segments)
        UNION ALL
        SELECT n.tenant_id, n.created_at / 86400000, n.provider, n.category, n.status, COALESCE(c.actual_currency, c.currency, ''),
    1, n.segments, (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
    COALESCE(c.actual_micros, 0), COALESCE(c.difference_micros, 0),
    (COALESCE(c.actual_micros, CASE WHEN n.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END))
        FROM old_rows o JOIN new_rows n ON n.id = o.id LEFT JOIN message_costs c ON c.tenant_id = n.tenant_id AND c.message_id = n.id WHERE (o.status, o.created_at, o.provider, o.category, o.segments) IS DISTINCT FROM (n.status, n.created_at, n.provider, n.category, n.segments)
    ) AS d (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    GROUP BY tenant_id, day, provider, category, status, currency
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0
    ORDER BY tenant_id, day, provider, category, status, currency
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
    RETURN NULL;
END
$$;
CREATE TRIGGER rollups_message_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rollups_message_update();

CREATE FUNCTION rollups_message_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One set-based upsert per statement, its rows in key order so that concurrent writers
    -- take the rollup rows' locks in the same order.
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT tenant_id, day, provider, category, status, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM (
        SELECT o.tenant_id, o.created_at / 86400000, o.provider, o.category, o.status, COALESCE(c.actual_currency, c.currency, ''),
    -1, -o.segments, -(CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
    -COALESCE(c.actual_micros, 0), -COALESCE(c.difference_micros, 0),
    -(COALESCE(c.actual_micros, CASE WHEN o.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END))
        FROM old_rows o LEFT JOIN message_costs c ON c.tenant_id = o.tenant_id AND c.message_id = o.id
    ) AS d (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    GROUP BY tenant_id, day, provider, category, status, currency
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0
    ORDER BY tenant_id, day, provider, category, status, currency
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
    RETURN NULL;
END
$$;
CREATE TRIGGER rollups_message_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows 
    FOR EACH STATEMENT EXECUTE FUNCTION rollups_message_delete();

CREATE FUNCTION rollups_cost_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One set-based upsert per statement, its rows in key order so that concurrent writers
    -- take the rollup rows' locks in the same order.
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT tenant_id, day, provider, category, status, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM (
        SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status, '',
    -1, -m.segments, -(0),
    -0, -0,
    -(0)
        FROM new_rows c JOIN messages m ON m.tenant_id = c.tenant_id AND m.id = c.message_id
        UNION ALL
        SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status, COALESCE(c.actual_currency, c.currency, ''),
    1, m.segments, (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
    COALESCE(c.actual_micros, 0), COALESCE(c.difference_micros, 0),
    (COALESCE(c.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END))
        FROM new_rows c JOIN messages m ON m.tenant_id = c.tenant_id AND m.id = c.message_id
    ) AS d (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    GROUP BY tenant_id, day, provider, category, status, currency
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0
    ORDER BY tenant_id, day, provider, category, status, currency
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
    RETURN NULL;
END
$$;
CREATE TRIGGER rollups_cost_insert AFTER INSERT ON message_costs
    REFERENCING  NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rollups_cost_insert();

CREATE FUNCTION rollups_cost_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One set-based upsert per statement, its rows in key order so that concurrent writers
    -- take the rollup rows' locks in the same order.
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT tenant_id, day, provider, category, status, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM (
        SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status, COALESCE(o.actual_currency, o.currency, ''),
    -1, -m.segments, -(CASE WHEN o.actual_currency IS NULL OR o.actual_currency = o.currency THEN COALESCE(o.estimate_micros, 0) ELSE 0 END),
    -COALESCE(o.actual_micros, 0), -COALESCE(o.difference_micros, 0),
    -(COALESCE(o.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(o.estimate_micros, 0) END))
        FROM old_rows o JOIN messages m ON m.tenant_id = o.tenant_id AND m.id = o.message_id
        UNION ALL
        SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status, COALESCE(c.actual_currency, c.currency, ''),
    1, m.segments, (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
    COALESCE(c.actual_micros, 0), COALESCE(c.difference_micros, 0),
    (COALESCE(c.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END))
        FROM new_rows c JOIN messages m ON m.tenant_id = c.tenant_id AND m.id = c.message_id
    ) AS d (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    GROUP BY tenant_id, day, provider, category, status, currency
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0
    ORDER BY tenant_id, day, provider, category, status, currency
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
    RETURN NULL;
END
$$;
CREATE TRIGGER rollups_cost_update AFTER UPDATE ON message_costs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rollups_cost_update();

CREATE FUNCTION rollups_cost_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One set-based upsert per statement, its rows in key order so that concurrent writers
    -- take the rollup rows' locks in the same order.
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT tenant_id, day, provider, category, status, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM (
        SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status, COALESCE(o.actual_currency, o.currency, ''),
    -1, -m.segments, -(CASE WHEN o.actual_currency IS NULL OR o.actual_currency = o.currency THEN COALESCE(o.estimate_micros, 0) ELSE 0 END),
    -COALESCE(o.actual_micros, 0), -COALESCE(o.difference_micros, 0),
    -(COALESCE(o.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(o.estimate_micros, 0) END))
        FROM old_rows o JOIN messages m ON m.tenant_id = o.tenant_id AND m.id = o.message_id
        UNION ALL
        SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status, '',
    1, m.segments, (0),
    0, 0,
    (0)
        FROM old_rows o JOIN messages m ON m.tenant_id = o.tenant_id AND m.id = o.message_id
    ) AS d (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    GROUP BY tenant_id, day, provider, category, status, currency
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0
    ORDER BY tenant_id, day, provider, category, status, currency
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
    RETURN NULL;
END
$$;
CREATE TRIGGER rollups_cost_delete AFTER DELETE ON message_costs
    REFERENCING OLD TABLE AS old_rows 
    FOR EACH STATEMENT EXECUTE FUNCTION rollups_cost_delete();
