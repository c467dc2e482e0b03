-- Rollups with every dimension of the reports (postgres). Mirrors migrations/sqlite/0014_report_rollups.sql.
--
-- 0013's rollups had no template, country or failure code, so the `template` and `country`
-- groups and `/delivery/metrics` read the period's messages. This migration replaces them:
--
-- `rollups`: counts and money per tenant x UTC day x provider x category x template x country
-- (as priced) x status x failure code (failed and undelivered only) x currency; '' stands for
-- none (a key column cannot be NULL). Triggers keep them in the same transaction as every
-- change to `messages` and `message_costs`: each subtracts the row's old contribution and adds
-- its new one, so the rollups always equal an aggregate over messages LEFT JOIN message_costs.
--
-- `latency_rollups`: histograms of the time from acceptance to a message's first `sent` and
-- first `delivered`, per tenant x UTC day of acceptance x one dimension (`all`, `provider`,
-- `category`, `template`, `country`) and its value, counted when that first status event is
-- recorded. Buckets (`latency_buckets`) are exact to 16 ms and then 1/8 of an octave wide,
-- so a percentile read from them is at most 9.1 % above the true value; the sum of the
-- durations is kept too, so the mean is exact.

DROP TRIGGER IF EXISTS rollups_message_insert ON messages;
DROP TRIGGER IF EXISTS rollups_message_update ON messages;
DROP TRIGGER IF EXISTS rollups_message_delete ON messages;
DROP TRIGGER IF EXISTS rollups_cost_insert ON message_costs;
DROP TRIGGER IF EXISTS rollups_cost_update ON message_costs;
DROP TRIGGER IF EXISTS rollups_cost_delete ON message_costs;
DROP FUNCTION IF EXISTS rollups_message_insert();
DROP FUNCTION IF EXISTS rollups_message_update();
DROP FUNCTION IF EXISTS rollups_message_delete();
DROP FUNCTION IF EXISTS rollups_cost_insert();
DROP FUNCTION IF EXISTS rollups_cost_update();
DROP FUNCTION IF EXISTS rollups_cost_delete();
DROP TABLE rollups;

CREATE TABLE rollups (
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
    cost_micros       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, provider, category, template_id, country, status, error_code, currency)
);

-- What is already stored.
INSERT INTO rollups (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
SELECT tenant_id, day, provider, category, template_id, country, status, error_code, currency, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
       SUM(difference_micros), SUM(cost_micros)
FROM (
    SELECT m.tenant_id AS tenant_id,
        m.created_at / 86400000 AS day,
        m.provider AS provider,
        m.category AS category,
        COALESCE(m.template_id, '') AS template_id,
        COALESCE(c.country, '') AS country,
        m.status AS status,
        CASE WHEN m.status IN ('failed', 'undelivered') THEN COALESCE(m.error_code, '') ELSE '' END AS error_code,
        COALESCE(c.actual_currency, c.currency, '') AS currency,
        1 AS messages,
        m.segments AS segments,
        (CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency THEN COALESCE(c.estimate_micros, 0) ELSE 0 END) AS estimated_micros,
        COALESCE(c.actual_micros, 0) AS actual_micros,
        COALESCE(c.difference_micros, 0) AS difference_micros,
        COALESCE(c.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0 ELSE COALESCE(c.estimate_micros, 0) END) AS cost_micros
    FROM messages m
    LEFT JOIN message_costs c ON c.tenant_id = m.tenant_id AND c.message_id = m.id
) AS d
GROUP BY tenant_id, day, provider, category, template_id, country, status, error_code, currency;

CREATE TABLE latency_buckets (
    lower_ms BIGINT PRIMARY KEY NOT NULL,
    upper_ms BIGINT NOT NULL
);

INSERT INTO latency_buckets (lower_ms, upper_ms) VALUES
    (0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8),
    (8, 9), (9, 10), (10, 11), (11, 12), (12, 13), (13, 14), (14, 15), (15, 16),
    (16, 18), (18, 20), (20, 21), (21, 23), (23, 25), (25, 27), (27, 30), (30, 32),
    (32, 35), (35, 39), (39, 42), (42, 46), (46, 50), (50, 54), (54, 59), (59, 64),
    (64, 70), (70, 77), (77, 83), (83, 91), (91, 99), (99, 108), (108, 118), (118, 128),
    (128, 140), (140, 153), (153, 166), (166, 182), (182, 198), (198, 216), (216, 235), (235, 256),
    (256, 280), (280, 305), (305, 332), (332, 363), (363, 395), (395, 431), (431, 470), (470, 512),
    (512, 559), (559, 609), (609, 664), (664, 725), (725, 790), (790, 862), (862, 940), (940, 1024),
    (1024, 1117), (1117, 1218), (1218, 1328), (1328, 1449), (1449, 1580), (1580, 1723), (1723, 1879), (1879, 2048),
    (2048, 2234), (2234, 2436), (2436, 2656), (2656, 2897), (2897, 3159), (3159, 3445), (3445, 3757), (3757, 4096),
    (4096, 4467), (4467, 4871), (4871, 5312), (5312, 5793), (5793, 6317), (6317, 6889), (6889, 7513), (7513, 8192),
    (8192, 8934), (8934, 9742), (9742, 10624), (10624, 11586), (11586, 12634), (12634, 13778), (13778, 15025), (15025, 16384),
    (16384, 17867), (17867, 19484), (19484, 21248), (21248, 23171), (23171, 25268), (25268, 27555), (27555, 30049), (30049, 32768),
    (32768, 35734), (35734, 38968), (38968, 42495), (42495, 46341), (46341, 50536), (50536, 55109), (55109, 60097), (60097, 65536),
    (65536, 71468), (71468, 77936), (77936, 84990), (84990, 92682), (92682, 101071), (101071, 110218), (110218, 120194), (120194, 131072),
    (131072, 142936), (142936, 155872), (155872, 169980), (169980, 185364), (185364, 202141), (202141, 220436), (220436, 240388), (240388, 262144),
    (262144, 285871), (285871, 311744), (311744, 339959), (339959, 370728), (370728, 404282), (404282, 440872), (440872, 480775), (480775, 524288),
    (524288, 571741), (571741, 623488), (623488, 679918), (679918, 741456), (741456, 808563), (808563, 881744), (881744, 961549), (961549, 1048576),
    (1048576, 1143481), (1143481, 1246975), (1246975, 1359835), (1359835, 1482911), (1482911, 1617126), (1617126, 1763488), (1763488, 1923097), (1923097, 2097152),
    (2097152, 2286961), (2286961, 2493949), (2493949, 2719670), (2719670, 2965821), (2965821, 3234251), (3234251, 3526976), (3526976, 3846194), (3846194, 4194304),
    (4194304, 4573921), (4573921, 4987897), (4987897, 5439340), (5439340, 5931642), (5931642, 6468502), (6468502, 7053951), (7053951, 7692388), (7692388, 8388608),
    (8388608, 9147842), (9147842, 9975793), (9975793, 10878679), (10878679, 11863284), (11863284, 12937003), (12937003, 14107901), (14107901, 15384775), (15384775, 16777216),
    (16777216, 18295684), (18295684, 19951585), (19951585, 21757358), (21757358, 23726567), (23726567, 25874005), (25874005, 28215802), (28215802, 30769550), (30769550, 33554432),
    (33554432, 36591368), (36591368, 39903170), (39903170, 43514715), (43514715, 47453133), (47453133, 51748009), (51748009, 56431604), (56431604, 61539100), (61539100, 67108864),
    (67108864, 73182736), (73182736, 79806339), (79806339, 87029430), (87029430, 94906266), (94906266, 103496017), (103496017, 112863207), (112863207, 123078200), (123078200, 134217728),
    (134217728, 146365471), (146365471, 159612678), (159612678, 174058859), (174058859, 189812532), (189812532, 206992034), (206992034, 225726413), (225726413, 246156399), (246156399, 268435456),
    (268435456, 292730941), (292730941, 319225355), (319225355, 348117718), (348117718, 379625063), (379625063, 413984067), (413984067, 451452826), (451452826, 492312797), (492312797, 536870912),
    (536870912, 585461881), (585461881, 638450709), (638450709, 696235435), (696235435, 759250125), (759250125, 827968133), (827968133, 902905651), (902905651, 984625594), (984625594, 1073741824),
    (1073741824, 1170923762), (1170923762, 1276901417), (1276901417, 1392470869), (1392470869, 1518500250), (1518500250, 1655936265), (1655936265, 1805811302), (1805811302, 1969251188), (1969251188, 2147483648),
    (2147483648, 2341847524), (2341847524, 2553802834), (2553802834, 2784941738), (2784941738, 3037000500), (3037000500, 3311872530), (3311872530, 3611622603), (3611622603, 9223372036854775807);

CREATE TABLE latency_rollups (
    tenant_id  TEXT NOT NULL,
    dimension  TEXT NOT NULL,
    day        BIGINT NOT NULL,
    value      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    bucket_ms  BIGINT NOT NULL,
    messages   BIGINT NOT NULL,
    total_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, dimension, day, value, kind, bucket_ms)
);

-- What is already stored: each message's first `sent` and first `delivered`.
INSERT INTO latency_rollups (tenant_id, dimension, day, value, kind, bucket_ms, messages, total_ms)
SELECT tenant_id, name, day, value, kind, bucket, COUNT(*), SUM(duration) FROM (
    SELECT m.tenant_id AS tenant_id, dims.name AS name, m.created_at / 86400000 AS day,
        CASE dims.name WHEN 'provider' THEN m.provider WHEN 'category' THEN m.category
            WHEN 'template' THEN COALESCE(m.template_id, '') WHEN 'country' THEN COALESCE(c.country, '')
            ELSE '' END AS value,
        f.status AS kind,
        (SELECT MAX(b.lower_ms) FROM latency_buckets b WHERE b.lower_ms <= GREATEST(f.occurred_at - m.created_at, 0)) AS bucket,
        1 AS one, GREATEST(f.occurred_at - m.created_at, 0) AS duration
    FROM messages m
    LEFT JOIN message_costs c ON c.tenant_id = m.tenant_id AND c.message_id = m.id
    CROSS JOIN (SELECT 'all' AS name UNION ALL SELECT 'provider' UNION ALL SELECT 'category' UNION ALL SELECT 'template' UNION ALL SELECT 'country') AS dims
    JOIN status_events f ON f.tenant_id = m.tenant_id AND f.message_id = m.id
    WHERE f.status IN ('sent', 'delivered') AND NOT EXISTS (SELECT 1 FROM status_events e WHERE e.tenant_id = f.tenant_id AND e.message_id = f.message_id AND e.status = f.status AND e.id < f.id)
) AS d
GROUP BY tenant_id, name, day, value, kind, bucket;

CREATE FUNCTION rollups_message_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One set-based upsert per statement, its rows in key order so that concurrent writers
    -- take the rollup rows' locks in the same order.
    INSERT INTO rollups (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
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
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0
    ORDER BY tenant_id, day, provider, category, template_id, country, status, error_code, currency
    ON CONFLICT (tenant_id, day, provider, category, template_id, country, status, error_code, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
    RETURN NULL;
END
$$;
CREATE TRIGGER rollups_message_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rollups_message_insert();

CREATE FUNCTION rollups_message_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One set-based upsert per statement, its rows in key order so that concurrent writers
    -- take the rollup rows' locks in the same order.
    INSERT INTO rollups (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
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
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0
    ORDER BY tenant_id, day, provider, category, template_id, country, status, error_code, currency
    ON CONFLICT (tenant_id, day, provider, category, template_id, country, status, error_code, currency) DO UPDATE SET
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
    INSERT INTO rollups (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
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
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0
    ORDER BY tenant_id, day, provider, category, template_id, country, status, error_code, currency
    ON CONFLICT (tenant_id, day, provider, category, template_id, country, status, error_code, currency) DO UPDATE SET
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
    INSERT INTO rollups (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
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
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0
    ORDER BY tenant_id, day, provider, category, template_id, country, status, error_code, currency
    ON CONFLICT (tenant_id, day, provider, category, template_id, country, status, error_code, currency) DO UPDATE SET
    messages = rollups.messages + excluded.messages, segments = rollups.segments + excluded.segments,
    estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
    actual_micros = rollups.actual_micros + excluded.actual_micros,
    difference_micros = rollups.difference_micros + excluded.difference_micros,
    cost_micros = rollups.cost_micros + excluded.cost_micros;
    RETURN NULL;
END
$$;
CREATE TRIGGER rollups_cost_insert AFTER INSERT ON message_costs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rollups_cost_insert();

CREATE FUNCTION rollups_cost_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One set-based upsert per statement, its rows in key order so that concurrent writers
    -- take the rollup rows' locks in the same order.
    INSERT INTO rollups (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
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
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0
    ORDER BY tenant_id, day, provider, category, template_id, country, status, error_code, currency
    ON CONFLICT (tenant_id, day, provider, category, template_id, country, status, error_code, currency) DO UPDATE SET
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
    INSERT INTO rollups (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
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
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0
    ORDER BY tenant_id, day, provider, category, template_id, country, status, error_code, currency
    ON CONFLICT (tenant_id, day, provider, category, template_id, country, status, error_code, currency) DO UPDATE SET
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

CREATE FUNCTION latency_rollups_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A row trigger limited to `sent` and `delivered`: a statement trigger would run for every
    -- history row (each enqueue, claim and bulk chunk) only to find nothing to count. Its five
    -- rows (one per dimension) are upserted in key order, as the rollups' functions do.
    INSERT INTO latency_rollups (tenant_id, dimension, day, value, kind, bucket_ms, messages, total_ms)
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
    GROUP BY tenant_id, name, day, value, kind, bucket
    ORDER BY tenant_id, name, day, value, kind, bucket
    ON CONFLICT (tenant_id, dimension, day, value, kind, bucket_ms) DO UPDATE SET
    messages = latency_rollups.messages + excluded.messages,
    total_ms = latency_rollups.total_ms + excluded.total_ms;
    RETURN NULL;
END
$$;
CREATE TRIGGER latency_rollups_event AFTER INSERT ON status_events
    FOR EACH ROW WHEN (NEW.status IN ('sent', 'delivered'))
    EXECUTE FUNCTION latency_rollups_event();
