-- A new message's rollup delta no longer reads its cost row. The enqueue is now one statement
-- (its cost row inserted in the same statement), and a statement's triggers see every row it
-- wrote: the message's delta counted the cost, and the cost row's trigger, which takes back a
-- delta without cost and adds one with it, counted it again. Now the message's delta is always
-- the one without cost, so the two triggers add up whichever order the rows were written in.
CREATE OR REPLACE FUNCTION rollups_message_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Appends the statement's changes; the store's folder adds them into the rollups.
    INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id, country, status, error_code, currency, messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros)
    SELECT n.tenant_id,
        n.created_at / 86400000,
        n.provider,
        n.category,
        COALESCE(n.template_id, ''),
        '',
        n.status,
        CASE WHEN n.status IN ('failed', 'undelivered') THEN COALESCE(n.error_code, '') ELSE '' END,
        '',
        count(*),
        SUM(n.segments),
        0,
        0,
        0,
        0
    FROM new_rows n
    GROUP BY 1, 2, 3, 4, 5, 7, 8;
    RETURN NULL;
END
$$;
