-- The segment count a provider reports (SQLite).
-- Mirrors migrations/postgres/0002_provider_segments.sql.
-- messages.segments stays Herald's own count, which the encoding decides exactly; the count a
-- provider reports is kept beside it (NULL until one reports), never in its place.

ALTER TABLE messages ADD COLUMN provider_segments INTEGER;
