-- Rollups (sqlite). Mirrors migrations/postgres/0013_rollups.sql.
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

CREATE TRIGGER rollups_message_insert AFTER INSERT ON messages BEGIN
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT NEW.tenant_id, NEW.created_at / 86400000, NEW.provider, NEW.category, NEW.status, COALESCE(c.actual_currency, c.currency, ''),
    1, NEW.segments, (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
    COALESCE(c.actual_micros, 0), COALESCE(c.difference_micros, 0),
    (COALESCE(c.actual_micros, CASE WHEN NEW.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END))
    FROM (SELECT 1) AS one LEFT JOIN message_costs c ON c.tenant_id = NEW.tenant_id AND c.message_id = NEW.id
    WHERE true
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
END;

CREATE TRIGGER rollups_message_update AFTER UPDATE OF status, created_at, provider, category, segments ON messages
WHEN OLD.status IS NOT NEW.status OR OLD.created_at IS NOT NEW.created_at OR OLD.provider IS NOT NEW.provider OR OLD.category IS NOT NEW.category OR OLD.segments IS NOT NEW.segments
BEGIN
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT OLD.tenant_id, OLD.created_at / 86400000, OLD.provider, OLD.category, OLD.status, COALESCE(c.actual_currency, c.currency, ''),
    -1, -OLD.segments, -(CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
    -COALESCE(c.actual_micros, 0), -COALESCE(c.difference_micros, 0),
    -(COALESCE(c.actual_micros, CASE WHEN OLD.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END))
    FROM (SELECT 1) AS one LEFT JOIN message_costs c ON c.tenant_id = OLD.tenant_id AND c.message_id = OLD.id
    WHERE true
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT NEW.tenant_id, NEW.created_at / 86400000, NEW.provider, NEW.category, NEW.status, COALESCE(c.actual_currency, c.currency, ''),
    1, NEW.segments, (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
    COALESCE(c.actual_micros, 0), COALESCE(c.difference_micros, 0),
    (COALESCE(c.actual_micros, CASE WHEN NEW.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END))
    FROM (SELECT 1) AS one LEFT JOIN message_costs c ON c.tenant_id = NEW.tenant_id AND c.message_id = NEW.id
    WHERE true
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
END;

CREATE TRIGGER rollups_message_delete AFTER DELETE ON messages BEGIN
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT OLD.tenant_id, OLD.created_at / 86400000, OLD.provider, OLD.category, OLD.status, COALESCE(c.actual_currency, c.currency, ''),
    -1, -OLD.segments, -(CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END),
    -COALESCE(c.actual_micros, 0), -COALESCE(c.difference_micros, 0),
    -(COALESCE(c.actual_micros, CASE WHEN OLD.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END))
    FROM (SELECT 1) AS one LEFT JOIN message_costs c ON c.tenant_id = OLD.tenant_id AND c.message_id = OLD.id
    WHERE true
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
END;

CREATE TRIGGER rollups_cost_insert AFTER INSERT ON message_costs BEGIN
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status, '',
    -1, -m.segments, -(0),
    -0, -0,
    -(0)
    FROM messages m WHERE m.tenant_id = NEW.tenant_id AND m.id = NEW.message_id 
    AND true
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status, COALESCE(NEW.actual_currency, NEW.currency, ''),
    1, m.segments, (CASE WHEN NEW.actual_currency IS NULL OR NEW.actual_currency = NEW.currency THEN COALESCE(NEW.estimate_micros, 0) ELSE 0 END),
    COALESCE(NEW.actual_micros, 0), COALESCE(NEW.difference_micros, 0),
    (COALESCE(NEW.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(NEW.estimate_micros, 0) END))
    FROM messages m WHERE m.tenant_id = NEW.tenant_id AND m.id = NEW.message_id 
    AND true
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
END;

CREATE TRIGGER rollups_cost_update AFTER UPDATE ON message_costs BEGIN
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status, COALESCE(OLD.actual_currency, OLD.currency, ''),
    -1, -m.segments, -(CASE WHEN OLD.actual_currency IS NULL OR OLD.actual_currency = OLD.currency THEN COALESCE(OLD.estimate_micros, 0) ELSE 0 END),
    -COALESCE(OLD.actual_micros, 0), -COALESCE(OLD.difference_micros, 0),
    -(COALESCE(OLD.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(OLD.estimate_micros, 0) END))
    FROM messages m WHERE m.tenant_id = OLD.tenant_id AND m.id = OLD.message_id 
    AND true
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status, COALESCE(NEW.actual_currency, NEW.currency, ''),
    1, m.segments, (CASE WHEN NEW.actual_currency IS NULL OR NEW.actual_currency = NEW.currency THEN COALESCE(NEW.estimate_micros, 0) ELSE 0 END),
    COALESCE(NEW.actual_micros, 0), COALESCE(NEW.difference_micros, 0),
    (COALESCE(NEW.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(NEW.estimate_micros, 0) END))
    FROM messages m WHERE m.tenant_id = NEW.tenant_id AND m.id = NEW.message_id 
    AND true
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
END;

CREATE TRIGGER rollups_cost_delete AFTER DELETE ON message_costs BEGIN
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status, COALESCE(OLD.actual_currency, OLD.currency, ''),
    -1, -m.segments, -(CASE WHEN OLD.actual_currency IS NULL OR OLD.actual_currency = OLD.currency THEN COALESCE(OLD.estimate_micros, 0) ELSE 0 END),
    -COALESCE(OLD.actual_micros, 0), -COALESCE(OLD.difference_micros, 0),
    -(COALESCE(OLD.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(OLD.estimate_micros, 0) END))
    FROM messages m WHERE m.tenant_id = OLD.tenant_id AND m.id = OLD.message_id 
    AND true
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
    INSERT INTO rollups (tenant_id, day, provider, category, status, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT m.tenant_id, m.created_at / 86400000, m.provider, m.category, m.status, '',
    1, m.segments, (0),
    0, 0,
    (0)
    FROM messages m WHERE m.tenant_id = OLD.tenant_id AND m.id = OLD.message_id 
    AND true
    ON CONFLICT (tenant_id, day, provider, category, status, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
END;
