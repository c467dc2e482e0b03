-- The views the reports read (sqlite). On PostgreSQL (0016_rollup_deltas.sql) they add the
-- rollup changes not yet folded in; SQLite's triggers update the rollups themselves, so here
-- they are the rollups as they are.

CREATE VIEW rollups_now AS
    SELECT tenant_id, day, provider, category, template_id, country, status, error_code, currency,
           messages, segments, estimated_micros, actual_micros, difference_micros, cost_micros
    FROM rollups;

CREATE VIEW latency_now AS
    SELECT tenant_id, dimension, day, value, kind, bucket_ms, messages, total_ms FROM latency_rollups;
