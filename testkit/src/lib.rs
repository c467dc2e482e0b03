//! Herald's test kit: a local stand-in for Twilio, used by Herald's tests, benchmarks and examples
//! and by `herald demo`.
//!
//! It deliberately does not depend on `herald`: the host depends on it (optionally, for the demo,
//! and for its tests), so everything here speaks only Twilio's wire protocol. Herald's exact
//! segment counting, phone validation and keyword rules stay in Herald; the carrier mirrors what
//! Twilio does with rules of its own (see each module).
//!
//! Layout:
//! - [`carrier`]: a local server speaking Twilio's Messages API, with signed status callbacks and
//!   simulated inbound messages (also reachable over HTTP at `POST /testkit/inbound`).
//! - [`fixtures`]: Twilio's own descriptions of its API, to check requests against.

pub mod carrier;
pub mod fixtures;
