-- Event log retention: the store removes events older than `storage.event_retention_ms`
-- (30 days by default) in batches, oldest first, and keeps here the highest id it removed, so a
-- stream resumed from an older `Last-Event-ID` can tell its client that events were lost
-- rather than skip them silently. One row, created here.
CREATE TABLE event_log_pruned (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    through   BIGINT NOT NULL
);
INSERT INTO event_log_pruned (singleton, through) VALUES (1, 0);
