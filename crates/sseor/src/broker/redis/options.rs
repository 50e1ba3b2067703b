//! The options of the Redis broker and publisher.

use std::time::Duration;

use crate::broker::Retention;

/// Options of the Redis broker; see [`Builder`](crate::Builder) for how they are set.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Prefix of every key and channel (default `sseor`).
    pub prefix: String,
    /// How often the instance probes its own subscription (default 1 s). Readiness is lost
    /// after three intervals without an answer.
    pub probe_interval: Duration,
    /// How long a Redis command or connection attempt may take (default 2 s).
    pub timeout: Duration,
    /// How long an instance's presence (its connection counts) outlives its last refresh
    /// (default 15 s); refreshed every third of that. An instance that dies without
    /// saying goodbye drops out of the cluster-wide counts after this long.
    pub presence_ttl: Duration,
    /// A PEM file of the certificate authority that signed the Redis server's
    /// certificate, for `rediss://` with a private CA (default: the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// How much history is kept per target. The retention of the serving instances
    /// ([`RedisBroker`](super::RedisBroker)) is recorded in Redis, and every publish keeps the longer of its
    /// own and that one.
    pub retention: Retention,
    /// The largest message from another Redis client (one that sseor did not number) that
    /// is delivered, in bytes (default 64 KiB, the HTTP API's body limit); larger ones are
    /// dropped with a warning.
    pub foreign_message_limit: usize,
    /// Replicas that must confirm each publish (`WAIT`) before it is acknowledged
    /// (default 0: none). Redis replicates asynchronously: a master that dies may take
    /// its last events with it, and its promoted replica then gives their positions to
    /// new events. Instances that were connected see the number go back and reset their
    /// streams; with this option, an acknowledged event survives the loss of a master as
    /// long as one of the replicas that confirmed it is promoted. A publish that fewer
    /// replicas confirm within [`timeout`](Self::timeout) fails (it may still have been
    /// delivered: publish it again with the same publisher's id).
    pub wait_replicas: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "sseor".into(),
            probe_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            presence_ttl: Duration::from_secs(15),
            ca_file: None,
            retention: Retention::default(),
            foreign_message_limit: 64 * 1024,
            wait_replicas: 0,
        }
    }
}
