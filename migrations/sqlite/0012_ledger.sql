-- The cost ledger and budgets (sqlite). Mirrors migrations/postgres/0012_ledger.sql.
-- Money is integer micro-units plus an ISO 4217 currency everywhere; times are UTC milliseconds.

-- Every money step of a message, each written in the transaction of the step it records:
-- kind 'estimate' (at accept: segments x price), 'reservation' and 'release' (a budget's hold,
-- naming the budget and its period), 'actual' (a provider's price for one attempt, keyed by the
-- attempt's provider message id in attempt_ref; a changed price for the same attempt is a
-- further 'actual' row holding the change, so the rows of a message always sum to its cost).
CREATE TABLE ledger_entries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    budget       TEXT,
    period_start BIGINT,
    attempt_ref  TEXT,
    micros       BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX ledger_entries_message ON ledger_entries (tenant_id, message_id, kind);

-- One row per priced message: the estimate (or why there is none), the sum of its actual prices
-- and the reconciled difference (actual - estimate, when both are in one currency).
CREATE TABLE message_costs (
    tenant_id         TEXT NOT NULL,
    message_id        TEXT NOT NULL,
    provider          TEXT NOT NULL,
    country           TEXT,
    segments          INTEGER NOT NULL,
    estimate_micros   BIGINT,
    currency          TEXT,
    estimate_source   TEXT,
    reason            TEXT,
    actual_micros     BIGINT,
    actual_currency   TEXT,
    difference_micros BIGINT,
    created_at        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, message_id)
);

-- The running average of actual per-segment prices per tenant, provider and country (the
-- fallback estimate where no price entry fits): sums, so each new price is one update.
CREATE TABLE price_averages (
    tenant_id      TEXT NOT NULL,
    provider       TEXT NOT NULL,
    country        TEXT NOT NULL,
    currency       TEXT NOT NULL,
    total_micros   BIGINT NOT NULL,
    total_segments BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, provider, country, currency)
);

-- Budgets: hard_cap 1 refuses sends past the limit; alert_thresholds is a JSON list of percents.
CREATE TABLE budgets (
    tenant_id        TEXT NOT NULL,
    name             TEXT NOT NULL,
    period           TEXT NOT NULL,
    limit_micros     BIGINT NOT NULL,
    currency         TEXT NOT NULL,
    category         TEXT,
    alert_thresholds TEXT NOT NULL,
    hard_cap         INTEGER NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- A budget's usage in one period (period_start: UTC midnight of the day or of the month's first
-- day). Reservations are taken by one conditional UPDATE of this row.
CREATE TABLE budget_usage (
    tenant_id       TEXT NOT NULL,
    budget          TEXT NOT NULL,
    period_start    BIGINT NOT NULL,
    spent_micros    BIGINT NOT NULL DEFAULT 0,
    reserved_micros BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, budget, period_start)
);

-- What each message holds of each budget: state 'held' until its actual price settles it
-- ('settled') or it fails before the provider or is canceled ('released').
CREATE TABLE budget_holds (
    tenant_id    TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    budget       TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    micros       BIGINT NOT NULL,
    state        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, message_id, budget)
);

-- Thresholds that fired, so each fires once per budget and period.
CREATE TABLE budget_alerts (
    tenant_id    TEXT NOT NULL,
    budget       TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    threshold    INTEGER NOT NULL,
    fired_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, budget, period_start, threshold)
);
