//! The code that keeps each target's sequence in Redis: a library of Redis Functions
//! (`functions.lua`, loaded with `FUNCTION LOAD` on every master), so that any service, in
//! any language, can publish with positions and history from its own Redis client:
//!
//! ```text
//! FCALL sseor_publish 2 sseor:{user:42} sseor:{user:42}:history '{"type":"note","data":{}}'
//! ```
//!
//! and one script that keeps the retention the serving instances ask for.

/// The library: `sseor_publish` (publishes with `PUBLISH`), `sseor_publish_sharded` (with
/// `SPUBLISH`, on a Redis Cluster), `sseor_history` (reads a history from a number on),
/// `sseor_rewound`, and for lifecycles `sseor_hold`, `sseor_release` (which instances hold
/// a target's streams) and `sseor_claim_departed`; see the file for their keys and
/// arguments.
pub(super) const FUNCTIONS: &str = include_str!("functions.lua");

/// Records the retention of a serving instance for every publisher: each of the two keys
/// (KEYS: most events, longest time in ms; ARGV: this instance's values, then how long
/// the record lasts in ms) keeps the longest retention of the instances alive. A key is
/// only refreshed by an instance whose value is at least the one recorded, so that once
/// the instances that asked for more are gone, it expires and the others' takes over.
/// Returns, per key, 1 when this instance's value is recorded, 0 when a longer one is.
pub(super) const RECORD_RETENTION: &str = include_str!("record_retention.lua");
