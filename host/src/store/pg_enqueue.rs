//! The enqueue on PostgreSQL as **one statement**: the message, its queue entry, its first event
//! and history row, and with a charge its cost row, holds, ledger rows, reservations and the
//! alerts they fire, as data-modifying `WITH` clauses over the inserted message.
//!
//! Why: each statement is a round trip to the server, and an enqueue was four of them (eight or
//! more with a charge) plus `BEGIN` and `COMMIT`; the server's backends sat idle in
//! transaction waiting for the client. One statement is one round trip, atomic on its own.
//!
//! - Everything after the message reads it from the `m` clause, so a reused idempotency key (the
//!   insert does nothing) writes nothing else, and the caller reads the stored message.
//! - A hard-capped reservation without room returns no row; the final `SELECT` then calls
//!   `herald_refuse` (migration 0019), whose error (SQLSTATE `HB001`) aborts the statement, so
//!   nothing of the message is stored: [`StoreError::BudgetExceeded`].
//! - A threshold a reservation crosses is inserted into `budget_alerts` (once per period, by its
//!   key) and logged as a `budget.threshold` event in the same statement.
//!
//! In a group transaction (`pg_group.rs`) a message with one budget hold takes the
//! [`Form::Deferred`] statement, without its reservation, which its lane takes for the batch.
//!
//! The statement's clauses see one snapshot: the first event's previous status is `NULL`, as it
//! is for any new message.

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Row as _};

use super::dialect::Queries;
use super::error::{Result, StoreError};
use super::events::{BUDGET_THRESHOLD, MESSAGE_STATUS, status_payload};
use super::ledger::{BudgetAlert, Hold, reservation_upsert};
use super::messages::{MESSAGE_COLUMNS, MESSAGE_VALUES, message_args, placement};
use super::model::{Enqueued, NewMessage};
use super::priority::ClaimPriority;
use super::script::bind;
use super::shared::db_int;

/// The SQLSTATE of `herald_refuse`.
const REFUSED: &str = "HB001";

/// What one statement did.
pub(super) enum Done {
    /// The message is stored, with the alerts its reservations fired.
    Created(Box<Enqueued>, Vec<BudgetAlert>),
    /// Nothing is stored: the idempotency key names a stored message.
    Keyed,
}

impl Queries<Postgres> {
    /// Stores and queues a new message in one statement that commits alone, or returns the
    /// message that its idempotency key already names.
    pub(super) async fn enqueue_one(
        pool: &PgPool,
        new: &NewMessage,
    ) -> Result<(Enqueued, Vec<BudgetAlert>)> {
        let done = Self::run_one(&mut *pool.acquire().await?, new, Form::Aborting).await?;
        Self::answer(pool, new, done).await
    }

    /// Runs `new`'s statement in `form` on `conn`.
    pub(super) async fn run_one(
        conn: &mut PgConnection,
        new: &NewMessage,
        form: Form,
    ) -> Result<Done> {
        let sql = statement(new, form);
        let (_, send_at) = placement(new);
        let mut query = sqlx::query::<Postgres>(AssertSqlSafe(sql));
        for arg in &message_args(new) {
            query = bind(query, arg);
        }
        let mut query = query
            .bind(send_at.unwrap_or(new.now))
            .bind(ClaimPriority::of(&new.category, new.bulk).as_i32());
        let holds: &[Hold] = new.charge.as_ref().map_or(&[], |charge| &charge.holds);
        if let Some(charge) = &new.charge {
            query = query
                .bind(charge.provider.as_str())
                .bind(charge.country.as_deref())
                .bind(db_int(charge.segments))
                .bind(charge.estimate.as_ref().map(|m| m.micros))
                .bind(charge.estimate.as_ref().map(|m| m.currency.as_str()))
                .bind(charge.source.as_deref())
                .bind(charge.reason.as_deref());
            for hold in holds {
                let thresholds: Vec<i32> = hold
                    .thresholds
                    .iter()
                    .map(|&t| i32::try_from(t).unwrap_or(i32::MAX))
                    .collect();
                query = query
                    .bind(hold.budget.as_str())
                    .bind(hold.period_start)
                    .bind(hold.micros);
                // A deferred statement (one hold) uses neither: PostgreSQL takes no more
                // parameters than the statement names.
                if form != Form::Deferred {
                    query = query.bind(hold.limit_micros).bind(thresholds);
                }
            }
        }
        let row = match query.fetch_optional(&mut *conn).await {
            Ok(row) => row,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(REFUSED) => {
                return Err(StoreError::BudgetExceeded {
                    budget: db.message().to_owned(),
                });
            }
            Err(error) => return Err(error.into()),
        };
        // A deferred statement's reservations (and so its alerts) come later, from its lane.
        let reserved = if form == Form::Deferred { &[] } else { holds };
        Ok(match row {
            Some(row) => Done::Created(
                Box::new(Enqueued::Created(Self::message_from_row(&row)?)),
                fired(&row, new, reserved)?,
            ),
            None => Done::Keyed,
        })
    }

    /// The caller's answer once the statement's transaction committed.
    pub(super) async fn answer(
        pool: &PgPool,
        new: &NewMessage,
        done: Done,
    ) -> Result<(Enqueued, Vec<BudgetAlert>)> {
        match done {
            Done::Created(enqueued, alerts) => Ok((*enqueued, alerts)),
            Done::Keyed => Ok((Self::existing(pool, new).await?, Vec::new())),
        }
    }

    /// The message a reused idempotency key names, or the conflict if the request differs.
    async fn existing(pool: &PgPool, new: &NewMessage) -> Result<Enqueued> {
        let key = new.idempotency_key.clone().unwrap_or_default();
        let row = sqlx::query(super::messages::SELECT_BY_IDEMPOTENCY_KEY)
            .bind(new.tenant_id.as_str())
            .bind(key.as_str())
            .fetch_one(pool)
            .await?;
        let existing = Self::message_from_row(&row)?;
        if existing.request_hash == new.request_hash {
            Ok(Enqueued::Existing(existing))
        } else {
            Err(StoreError::IdempotencyConflict { key })
        }
    }
}

/// The alerts the statement fired, from each hold's `hold{i}_alerts` column (thresholds
/// joined by commas) and committed amount.
fn fired(row: &PgRow, new: &NewMessage, holds: &[Hold]) -> Result<Vec<BudgetAlert>> {
    let mut alerts = Vec::new();
    for (i, hold) in holds.iter().enumerate() {
        let committed: i64 = row.try_get(format!("hold{i}_committed").as_str())?;
        let thresholds: Option<String> = row.try_get(format!("hold{i}_alerts").as_str())?;
        for threshold in thresholds.iter().flat_map(|list| list.split(',')) {
            let threshold = threshold
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("alert threshold {threshold:?}")))?;
            alerts.push(BudgetAlert {
                tenant: new.tenant_id.clone(),
                budget: hold.budget.clone(),
                threshold,
                period_start: hold.period_start,
                committed_micros: committed,
            });
        }
    }
    alerts.sort_by_key(|alert| (alert.budget.clone(), alert.threshold));
    Ok(alerts)
}

/// How a statement takes its reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// In the statement: a reservation without room aborts it, through `herald_refuse`, so
    /// nothing of the message is stored. For a statement that commits alone, and for a message
    /// without a hold in a group transaction (where it cannot abort).
    Aborting,
    /// Everything but the reservation itself and its alerts: for a message with one hold in a
    /// group transaction, whose lane then takes the reservations of the whole batch at once
    /// (`pg_group.rs`), holding the budget's row lock only from there to the commit.
    Deferred,
}

/// Whether `new` can go in a group transaction: without an idempotency key (whose insert could
/// store nothing) and with at most one budget hold.
pub(super) fn batchable(new: &NewMessage) -> bool {
    let holds = new.charge.as_ref().map_or(0, |charge| charge.holds.len());
    new.idempotency_key.is_none() && holds <= 1
}

/// Parameters `$1…$25` are the message's, `$26…$32` the charge's, then five per hold.
const CHARGE: usize = 25;
const HOLDS: usize = CHARGE + 7;

/// The placeholders of hold `i`: budget, period start, amount, limit and thresholds.
fn hold_params(i: usize) -> [String; 5] {
    std::array::from_fn(|k| format!("${}", HOLDS + 5 * i + k + 1))
}

/// The statement for `new` in `form`; its parameters are bound in [`Queries::run_one`]'s
/// order.
pub(super) fn statement(new: &NewMessage, form: Form) -> String {
    let payload = status_payload::<Postgres>("m.status", "NULL", "NULL", "NULL", "'api'", "$18");
    let holds: &[Hold] = new.charge.as_ref().map_or(&[], |charge| &charge.holds);
    let mut sql = format!(
        "WITH m AS (
             INSERT INTO messages {MESSAGE_COLUMNS}
             VALUES {MESSAGE_VALUES}
             ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
             RETURNING *
         ), queued AS (
             INSERT INTO queue_entries (message_id, tenant_id, due_at, priority)
             SELECT m.id, m.tenant_id, $24, $25 FROM m
         ), logged AS (
             INSERT INTO events (tenant_id, kind, message_id, payload, created_at)
             SELECT m.tenant_id, '{MESSAGE_STATUS}', m.id, {payload}, $18 FROM m
         ), history AS (
             INSERT INTO status_events (tenant_id, message_id, status, source, occurred_at)
             SELECT m.tenant_id, m.id, m.status, 'api', $18 FROM m
         )"
    );
    let mut columns = String::from("m.*");
    let mut joins = String::new();
    if new.charge.is_some() {
        let [
            provider,
            country,
            segments,
            micros,
            currency,
            source,
            reason,
        ] = std::array::from_fn::<String, 7, _>(|k| format!("${}", CHARGE + k + 1));
        sql.push_str(&format!(
            ", cost AS (
                 INSERT INTO message_costs (tenant_id, message_id, provider, country, segments,
                     estimate_micros, currency, estimate_source, reason, created_at)
                 SELECT m.tenant_id, m.id, {provider}, {country}, {segments}, {micros},
                     {currency}, {source}, {reason}, $18 FROM m
             ), estimated AS (
                 INSERT INTO ledger_entries (tenant_id, message_id, kind, micros, currency,
                     created_at)
                 SELECT m.tenant_id, m.id, 'estimate', {micros}, {currency}, $18 FROM m
                 WHERE {micros} IS NOT NULL
             )"
        ));
        for (i, hold) in holds.iter().enumerate() {
            let [budget, period, amount, limit, thresholds] = hold_params(i);
            // The hold and its `reservation` ledger row, in both forms.
            sql.push_str(&format!(
                ", held{i} AS (
                     INSERT INTO budget_holds (tenant_id, message_id, budget, period_start,
                         micros, state)
                     SELECT m.tenant_id, m.id, {budget}, {period}, {amount}, 'held' FROM m
                 ), reserved{i} AS (
                     INSERT INTO ledger_entries (tenant_id, message_id, kind, budget,
                         period_start, micros, currency, created_at)
                     SELECT m.tenant_id, m.id, 'reservation', {budget}, {period}, {amount},
                         COALESCE({currency}, ''), $18 FROM m
                 )"
            ));
            if form == Form::Deferred {
                // The lane takes the reservation and fires the alerts.
                continue;
            }
            let committed = format!("(r{i}.spent_micros + r{i}.reserved_micros)");
            let event = format!(
                "json_build_object('budget', {budget}, 'threshold', a{i}.threshold,
                     'period_start', {period}, 'committed_micros', {committed},
                     'limit_micros', {limit}, 'fired_at', $18)::text"
            );
            sql.push_str(&format!(
                ", {reservation}, a{i} AS (
                     INSERT INTO budget_alerts (tenant_id, budget, period_start, threshold,
                         fired_at)
                     SELECT m.tenant_id, {budget}, {period}, t.threshold, $18
                     FROM m, r{i}, unnest({thresholds}::int[]) AS t(threshold)
                     WHERE ({committed} - {amount})::numeric * 100
                             < {limit}::numeric * t.threshold
                       AND {committed}::numeric * 100 >= {limit}::numeric * t.threshold
                     ON CONFLICT (tenant_id, budget, period_start, threshold) DO NOTHING
                     RETURNING threshold
                 ), e{i} AS (
                     INSERT INTO events (tenant_id, kind, message_id, payload, created_at)
                     SELECT $2, '{BUDGET_THRESHOLD}', NULL, {event}, $18 FROM a{i}, r{i}
                 )",
                reservation = reservation(hold, i),
            ));
            // A reservation without room (no row) aborts the statement.
            columns.push_str(&format!(
                ", CASE WHEN r{i}.spent_micros IS NULL THEN herald_refuse({budget}) END
                     AS hold{i}_refused"
            ));
            columns.push_str(&format!(
                ", {committed} AS hold{i}_committed,
                 (SELECT string_agg(threshold::text, ',' ORDER BY threshold) FROM a{i})
                     AS hold{i}_alerts"
            ));
            joins.push_str(&format!(" LEFT JOIN r{i} ON true"));
        }
    }
    sql.push_str(&format!("\n SELECT {columns} FROM m{joins}"));
    sql
}

/// The clause `r{i}` that takes hold `i`'s reservation over the inserted message `m`; it
/// returns the usage row after the reservation, or nothing when a hard cap has no room.
fn reservation(hold: &Hold, i: usize) -> String {
    let [budget, period, amount, _, _] = hold_params(i);
    let upsert = reservation_upsert(
        ["$2", &budget, &period, &amount],
        hold.hard_cap,
        " FROM m WHERE true",
    );
    format!("r{i} AS ({upsert})")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The placeholders a statement uses are exactly `$1…$n` for the parameters bound: 25 for
    /// the message, 7 for a charge, 5 per hold.
    #[test]
    fn the_statement_numbers_its_parameters_as_they_are_bound() {
        let placeholders = |sql: &str| {
            let mut found = std::collections::BTreeSet::new();
            let bytes = sql.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'$' {
                    let digits: String = sql[i + 1..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    if let Ok(n) = digits.parse::<usize>() {
                        found.insert(n);
                    }
                    i += digits.len();
                }
                i += 1;
            }
            found
        };
        let hold = |name: &str| Hold {
            budget: name.to_owned(),
            period_start: 0,
            micros: 1,
            hard_cap: true,
            limit_micros: 10,
            thresholds: vec![50, 100],
        };
        let mut new = NewMessage {
            id: "msg_1".to_owned(),
            tenant_id: crate::domain::TenantId::default_tenant(),
            to_number: "+14155550100".to_owned(),
            sender: None,
            body: "hi".to_owned(),
            template_id: None,
            template_version: None,
            category: crate::domain::Category::transactional(),
            encoding: crate::segments::Encoding::Gsm7,
            segments: 1,
            units: 2,
            provider: "twilio".to_owned(),
            max_attempts: 3,
            customer_id: None,
            order_id: None,
            reservation_id: None,
            metadata: None,
            idempotency_key: None,
            request_hash: None,
            due_at: None,
            bulk: false,
            batch_id: None,
            now: 0,
            charge: None,
        };
        assert_eq!(
            placeholders(&statement(&new, Form::Aborting)),
            (1..=25).collect()
        );
        new.charge = Some(crate::store::Charge {
            provider: "twilio".to_owned(),
            country: None,
            segments: 1,
            estimate: None,
            source: None,
            reason: None,
            holds: vec![hold("a"), hold("b")],
        });
        assert_eq!(
            placeholders(&statement(&new, Form::Aborting)),
            (1..=25 + 7 + 10).collect()
        );
        new.charge.as_mut().unwrap().holds.pop();
        assert_eq!(
            placeholders(&statement(&new, Form::Deferred)),
            (1..=25 + 7 + 3).collect()
        );
    }
}
