//! A script: several statements that a caller runs as one step, each with its own `$1…$n`
//! parameters, and whose rows come back statement by statement.
//!
//! Why: on SQLite every statement is a round trip to sqlx's connection thread (two thread
//! wake-ups), and a write's cost followed its statement count more than the work in them. SQLite
//! runs a script in **one** round trip: its statements are joined into one SQL text, their
//! parameters renumbered into one list (sqlx-sqlite binds `$N` by number across the statements of
//! one text), and the connection thread steps through all of them before it answers.
//! PostgreSQL's extended protocol takes one statement per query, so there a script runs
//! statement by statement, with the same results.
//!
//! A script stops at its first failing statement; the statements before it stay applied, so a
//! caller runs one inside a transaction or savepoint that it rolls back on an error. A statement
//! that must not run when an earlier one changed nothing says so in its own SQL (`WHERE EXISTS
//! …`), since a one-trip script cannot stop half way.

use futures_util::TryStreamExt as _;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Database, Either, Executor as _};

use super::error::Result;
use super::group::take_opening;

/// A parameter of a script's statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Arg {
    /// Text or `NULL`.
    Text(Option<String>),
    /// A 64-bit integer or `NULL`.
    Int(Option<i64>),
    /// A 32-bit integer or `NULL` (PostgreSQL `integer` columns).
    Int32(Option<i32>),
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Self::Text(Some(value.to_owned()))
    }
}

impl From<Option<&str>> for Arg {
    fn from(value: Option<&str>) -> Self {
        Self::Text(value.map(str::to_owned))
    }
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Self::Int(Some(value))
    }
}

impl From<Option<i64>> for Arg {
    fn from(value: Option<i64>) -> Self {
        Self::Int(value)
    }
}

impl From<i32> for Arg {
    fn from(value: i32) -> Self {
        Self::Int32(Some(value))
    }
}

impl From<Option<i32>> for Arg {
    fn from(value: Option<i32>) -> Self {
        Self::Int32(value)
    }
}

/// One statement of a script: SQL with parameters `$1…$n`, and their values in order.
#[derive(Debug, Clone)]
pub(super) struct Statement {
    sql: String,
    args: Vec<Arg>,
}

impl Statement {
    /// A statement whose SQL numbers its parameters from `$1`. Only this crate's SQL goes in.
    pub(super) fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    /// Binds the next parameter.
    #[must_use]
    pub(super) fn bind(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }
}

/// Statements run as one step; see the module's documentation.
#[derive(Debug, Clone, Default)]
pub(super) struct Script {
    statements: Vec<Statement>,
}

/// The rows each statement of a script returned, in the script's order.
pub(super) type Rows<R> = Vec<Vec<R>>;

impl Script {
    /// Appends `statement`; returns its index among the script's results.
    pub(super) fn push(&mut self, statement: Statement) -> usize {
        self.statements.push(statement);
        self.statements.len() - 1
    }

    /// Whether the script has no statement.
    pub(super) fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// The script as one SQL text, each statement's parameters moved past those of the
    /// statements before it, and the parameters of all of them in order.
    fn joined(&self) -> (String, Vec<&Arg>) {
        let mut sql = String::new();
        let mut args = Vec::new();
        for statement in &self.statements {
            if !sql.is_empty() {
                sql.push_str(";\n");
            }
            renumber(&statement.sql, args.len(), &mut sql);
            args.extend(statement.args.iter());
        }
        (sql, args)
    }

    /// Runs the script on SQLite in one round trip to the connection's thread. The first script
    /// of a write in the group writer's batch also opens that write's savepoint, ahead of its
    /// own statements ([`take_opening`]).
    pub(super) async fn run_sqlite(&self, conn: &mut SqliteConnection) -> Result<Rows<SqliteRow>> {
        let head = take_opening();
        let (mut sql, args) = self.joined();
        let skip = match &head {
            Some(head) => {
                sql = format!("{};\n{sql}", head.sql);
                head.statements
            }
            None => 0,
        };
        let mut query = sqlx::query::<sqlx::Sqlite>(AssertSqlSafe(sql));
        for arg in args {
            query = bind(query, arg);
        }
        let mut rows: Rows<SqliteRow> = (0..self.statements.len()).map(|_| Vec::new()).collect();
        // Statements ended so far, the head's included (they return no rows).
        let mut ended = 0;
        let mut results = conn.fetch_many(query);
        loop {
            let result = match results.try_next().await {
                Ok(Some(result)) => result,
                Ok(None) => break,
                Err(error) => {
                    if let Some(head) = head.as_ref().filter(|_| ended < skip) {
                        head.broken();
                    }
                    return Err(error.into());
                }
            };
            match result {
                // A statement's end: its rows are all in.
                Either::Left(_) => ended += 1,
                Either::Right(row) => {
                    if let Some(into) = ended.checked_sub(skip).and_then(|at| rows.get_mut(at)) {
                        into.push(row);
                    }
                }
            }
        }
        Ok(rows)
    }

    /// Runs the script on PostgreSQL, one statement after the other.
    pub(super) async fn run_postgres(&self, conn: &mut PgConnection) -> Result<Rows<PgRow>> {
        let mut rows = Vec::with_capacity(self.statements.len());
        for statement in &self.statements {
            let mut query = sqlx::query::<sqlx::Postgres>(AssertSqlSafe(statement.sql.clone()));
            for arg in &statement.args {
                query = bind(query, arg);
            }
            rows.push(query.fetch_all(&mut *conn).await?);
        }
        Ok(rows)
    }
}

/// Binds `arg` on either backend.
pub(super) fn bind<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as Database>::Arguments>,
    arg: &Arg,
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments>
where
    DB: Database,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i32>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    match arg {
        Arg::Text(value) => query.bind(value.clone()),
        Arg::Int(value) => query.bind(*value),
        Arg::Int32(value) => query.bind(*value),
    }
}

/// Appends `sql` to `out` with every parameter `$n` written as `$(n + offset)`. Parameters in
/// quoted text (`'…'`, `"…"`) are left alone.
fn renumber(sql: &str, offset: usize, out: &mut String) {
    let mut chars = sql.char_indices().peekable();
    let mut quote: Option<char> = None;
    while let Some((_, c)) = chars.next() {
        match (quote, c) {
            (Some(open), c) if c == open => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '$') if chars.peek().is_some_and(|(_, next)| next.is_ascii_digit()) => {
                let mut number = 0usize;
                while let Some((_, digit)) = chars.peek().copied() {
                    let Some(value) = digit.to_digit(10) else {
                        break;
                    };
                    number = number * 10 + value as usize;
                    chars.next();
                }
                out.push('$');
                out.push_str(&(number + offset).to_string());
            }
            (None, c) => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renumbered(sql: &str, offset: usize) -> String {
        let mut out = String::new();
        renumber(sql, offset, &mut out);
        out
    }

    #[test]
    fn parameters_move_past_the_earlier_statements_and_quoted_text_stays() {
        assert_eq!(
            renumbered("SELECT $1, $2, $10 WHERE x = '$1' AND \"$2\" = $2", 3),
            "SELECT $4, $5, $13 WHERE x = '$1' AND \"$2\" = $5"
        );
        assert_eq!(renumbered("SELECT $1", 0), "SELECT $1");
        // A `$` that starts no parameter is kept as it is.
        assert_eq!(renumbered("SELECT '$' || $1, $", 1), "SELECT '$' || $2, $");
    }

    #[tokio::test]
    async fn a_sqlite_script_returns_each_statements_rows_and_stops_at_an_error() {
        use sqlx::{Connection as _, Row as _};
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
            .execute(&mut conn)
            .await
            .unwrap();
        let mut script = Script::default();
        script.push(
            Statement::new("INSERT INTO t (k, v) VALUES ($1, $2) RETURNING v")
                .bind("a")
                .bind(1_i64),
        );
        script.push(
            Statement::new("INSERT INTO t (k, v) VALUES ($1, $2), ($3, $2)")
                .bind("b")
                .bind(2_i64)
                .bind("c"),
        );
        script.push(Statement::new("SELECT k, v FROM t WHERE v >= $1 ORDER BY k").bind(2_i64));
        let rows = script.run_sqlite(&mut conn).await.unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][0].get::<i64, _>("v"), 1);
        assert!(
            rows[1].is_empty(),
            "an insert without RETURNING returns nothing"
        );
        let keys: Vec<String> = rows[2].iter().map(|row| row.get("k")).collect();
        assert_eq!(keys, ["b", "c"]);

        // The second statement conflicts: the first stays applied, the third never runs.
        let mut failing = Script::default();
        failing.push(Statement::new("INSERT INTO t (k, v) VALUES ($1, 9)").bind("d"));
        failing.push(Statement::new("INSERT INTO t (k, v) VALUES ($1, 9)").bind("a"));
        failing.push(Statement::new("INSERT INTO t (k, v) VALUES ($1, 9)").bind("e"));
        assert!(failing.run_sqlite(&mut conn).await.is_err());
        let keys: Vec<String> = sqlx::query_scalar("SELECT k FROM t ORDER BY k")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(keys, ["a", "b", "c", "d"]);
    }
}
