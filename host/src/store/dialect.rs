//! How the shared queries are made generic over the two backends: the [`Dialect`] trait (the few
//! SQL fragments that differ, implemented in `sqlite.rs` and `postgres.rs`), the [`Queries`]
//! handle the shared queries are written on, and [`Value`], which keeps their bounds short.
//!
//! SQLite and PostgreSQL both take `$1` placeholders, `RETURNING` and `ON CONFLICT ... DO
//! NOTHING`, so every query is written once, in `messages.rs`, `queue.rs` and `records.rs`, as
//! methods of `Queries<DB>`. Each of those files has one `impl` block whose `where` clause states
//! what the queries need from sqlx: an executor for a connection, and the Rust types they bind
//! and read. The compiler cannot carry such bounds inside [`Dialect`] (a trait's `where` clauses
//! about other types are not implied where the trait is used), so each block states them.

use std::marker::PhantomData;

use futures_util::future::BoxFuture;
use sqlx::encode::Encode;
use sqlx::{Database, Decode, IntoArguments, Type};

use super::error::Result;
use super::script::{Rows, Script};

/// What differs between the backends' SQL; the rest of every query is shared.
pub(super) trait Dialect: Database<Arguments: IntoArguments<Self>> {
    /// Starts a write transaction. SQLite's `BEGIN IMMEDIATE` takes the write lock up front
    /// instead of failing to upgrade a read lock later.
    const BEGIN: &'static str;

    /// Appended to a `SELECT` of message rows that the transaction reads, decides on and
    /// writes: PostgreSQL's ` FOR UPDATE`. SQLite needs none, as its single writer connection
    /// already serialises writers.
    const LOCK_ROWS: &'static str;

    /// Leases due queue entries, expired leases first (so a dead process's entries are taken
    /// over promptly however long the backlog), then unleased ones by claim priority
    /// ([`ClaimPriority`](super::ClaimPriority)) and due time. Binds `$1` the
    /// lease token, `$2` the lease's end, `$3` now and `$4` the most entries to take; returns
    /// `message_id, tenant_id` of each entry taken.
    const CLAIM: &'static str;

    /// Opens a JSON object built from `'key', value` pairs (the event log's payloads): SQLite's
    /// `json_object(`, PostgreSQL's `json_build_object(`.
    const JSON_OBJECT: &'static str;

    /// Closes [`Dialect::JSON_OBJECT`], as text.
    const JSON_END: &'static str;
    /// A `FROM` source with one row per element of the JSON array bound as `$1` (text), the
    /// element in column `value`, whose fields `value ->> n` reads as text: how a chunk of rows
    /// is bound as one value instead of one parameter per field.
    const JSON_ROWS: &'static str;

    /// Runs `script` on `conn` (see [`Script`]): SQLite in one round trip, PostgreSQL statement
    /// by statement.
    fn run_script<'c>(
        conn: &'c mut Self::Connection,
        script: &'c Script,
    ) -> BoxFuture<'c, Result<Rows<Self::Row>>>;
}

/// The shared queries over backend `DB`, all associated functions: `Queries::enqueue(pool, ..)`
/// picks the backend from the pool it is given.
pub(super) struct Queries<DB>(PhantomData<DB>);

/// A Rust type the shared queries bind as a parameter and read from a column on `DB` (sqlx's
/// `Encode`, `Decode` and `Type` in one bound).
pub(super) trait Value<'a, DB: Database>:
    Encode<'a, DB> + Decode<'a, DB> + Type<DB>
{
}

impl<'a, DB: Database, T> Value<'a, DB> for T where T: Encode<'a, DB> + Decode<'a, DB> + Type<DB> {}
