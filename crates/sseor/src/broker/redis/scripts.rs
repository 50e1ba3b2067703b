//! The Lua scripts that keep the event sequence in Redis, assembled from the `.lua` files
//! beside this one.
//!
//! Two scripts find or start the epoch the same way, so that part is one file
//! (`epoch.lua`) that both include, rather than two copies that could drift apart. Each
//! file starts with an empty line: the assembled texts, and so the SHA1s Redis caches
//! them under (`EVALSHA`), are the ones earlier versions sent.
//!
//! `epoch.lua` finds the epoch, or starts a new one from the candidate `ARGV[3]` when
//! Redis lost the clock or the epoch (emptied, restarted without persistence, a key
//! evicted): a position is never given twice, and one that the lost history held is never
//! taken for one of the new history. Scripts run one at a time, so of two instances that
//! find Redis empty, the first starts the epoch and the second uses it. `KEYS[1]` is the
//! clock and `KEYS[2]` the epoch; it leaves the epoch in the local `epoch`.

/// Numbers an event, keeps it in its target's history and publishes it, atomically, so
/// that positions reach every subscriber in increasing order and every event published is
/// in the history.
///
/// KEYS: the clock (hash `ms`, `seq`), the epoch, the target's history stream, the key
/// that remembers a publisher's id (the stream again when there is none), the key that
/// remembers the newest event trimmed from the stream, and the two keys of the retention
/// the serving instances keep (most events, longest time in ms).
/// ARGV: the event's JSON without an id (the position is spliced in as its first field),
/// the channel, a fresh random epoch to start if Redis has none, the most events kept,
/// the longest time kept (ms), the publisher's id (or empty). The retention used is the
/// longer of this publisher's and the serving instances', so that a process that only
/// publishes never cuts the history they keep.
/// Returns the position and the number of instances that received it, or the earlier
/// position and -1 for a publisher id seen before.
pub(super) const PUBLISH: &str = concat!(include_str!("epoch.lua"), include_str!("publish.lua"));

/// The position the event sequence is at, starting a new epoch (from the candidate
/// `ARGV[3]`) when Redis lost the old one, as [`PUBLISH`] would: what an instance reads
/// when its subscription comes back, to tell whether its streams missed events.
/// KEYS: the clock, the epoch. ARGV: the epoch this instance knows and the highest
/// sequence number it saw in it (a Redis that restarted from a persistence file older
/// than that lost events, and would give their positions again: a new epoch too, which
/// `sequence_rewound.lua` sees to), the candidate. Returns the epoch, the clock's `ms` and
/// `seq`.
pub(super) const SEQUENCE: &str = concat!(
    include_str!("sequence_rewound.lua"),
    include_str!("epoch.lua"),
    include_str!("sequence.lua"),
);

/// Records the retention of a serving instance for every publisher: each of the two keys
/// (KEYS: most events, longest time in ms; ARGV: this instance's values, then how long
/// the record lasts in ms) keeps the longest retention of the instances alive. A key is
/// only refreshed by an instance whose value is at least the one recorded, so that once
/// the instances that asked for more are gone, it expires and the others' takes over.
/// Returns, per key, 1 when this instance's value is recorded, 0 when a longer one is.
pub(super) const RECORD_RETENTION: &str = include_str!("record_retention.lua");
