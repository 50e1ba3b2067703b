//! This instance's presence in Redis, its connection counts, and the counts across every
//! live instance that presences add up to.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use tokio_util::sync::CancellationToken;

use super::commands::{Commands, unavailable};
use super::holders::Holders;
use super::scripts::RECORD_RETENTION;
use super::{RedisPublisher, Shared};
use crate::position::unix_millis;
use crate::{Fanout, Result};

/// The presence field that holds an instance's total: no user id is empty.
const TOTAL_FIELD: &str = "";

impl RedisPublisher {
    /// Connections across every live instance: of `user_id`, or in all when `None`.
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when Redis cannot be reached.
    pub async fn cluster_connections(&self, user_id: Option<&str>) -> Result<usize> {
        self.stored_connections(user_id, None).await
    }

    /// Connections that live instances other than `except` stored in their presence: of
    /// `user_id`, or in all when `None`.
    pub(super) async fn stored_connections(
        &self,
        user_id: Option<&str>,
        except: Option<&str>,
    ) -> Result<usize> {
        let others = self.live_instances(except).await?;
        if others.is_empty() {
            return Ok(0);
        }
        let mut counts = redis::pipe();
        for instance in &others {
            counts.hget(
                self.names.presence(instance),
                user_id.unwrap_or(TOTAL_FIELD),
            );
        }
        let counts: Vec<Option<usize>> =
            self.commands.pipeline(&counts).await.map_err(unavailable)?;
        Ok(counts.into_iter().flatten().sum())
    }

    /// The instances whose presence has not expired, but for `except`.
    pub(super) async fn live_instances(&self, except: Option<&str>) -> Result<Vec<String>> {
        let mut live = redis::cmd("ZRANGEBYSCORE");
        live.arg(self.names.instances())
            .arg(unix_millis())
            .arg("+inf");
        let mut live: Vec<String> = self.commands.query(&live).await.map_err(unavailable)?;
        live.retain(|live| Some(live.as_str()) != except);
        Ok(live)
    }
}

/// Keeps this instance's connection counts in Redis, with an expiry, so that every
/// instance can count connections cluster-wide; and, for lifecycles, releases what the
/// instances whose presence expired held, and writes again what this one holds when Redis
/// lost it.
pub(super) struct Presence {
    commands: Commands,
    shared: Arc<Shared>,
    fanout: Fanout,
    holders: Arc<Holders>,
    record_retention: Script,
    /// Whether the log already says that another instance keeps a longer history.
    told_of_longer_retention: bool,
}

impl Presence {
    /// The task for this instance, whose counts `fanout` gives.
    pub(super) fn new(
        commands: Commands,
        shared: Arc<Shared>,
        fanout: Fanout,
        holders: Arc<Holders>,
    ) -> Self {
        Self {
            commands,
            shared,
            fanout,
            holders,
            record_retention: Script::new(RECORD_RETENTION),
            told_of_longer_retention: false,
        }
    }

    /// Refreshes the presence every third of its lifetime until `stop`.
    pub(super) async fn run(mut self, stop: CancellationToken) {
        let ttl = self
            .shared
            .options
            .presence_ttl
            .max(Duration::from_millis(30));
        let mut ticks = tokio::time::interval(ttl / 3);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut whole = true;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let refreshed = tokio::time::timeout(self.shared.options.timeout, async {
                self.refresh(whole, ttl).await?;
                self.record_retention(ttl).await
            })
            .await;
            // After any failure, Redis may have lost the hash: write it whole next time.
            whole = !matches!(refreshed, Ok(Ok(())));
            if !whole {
                self.holders.maintain(ttl).await;
            }
        }
    }

    /// Writes this instance's counts: those that changed since the last refresh, or with
    /// `whole` every count, into an emptied hash (Redis may have lost it).
    async fn refresh(&self, whole: bool, ttl: Duration) -> redis::RedisResult<()> {
        let names = &self.shared.names;
        let key = names.presence(&self.shared.instance);
        let mut exists = redis::cmd("EXISTS");
        exists.arg(&key);
        let exists: bool = self.commands.query(&exists).await?;
        let whole = whole || !exists;
        let instance = &self.shared.instance;
        let keys = names.presence_keys(instance);
        let mut update = redis::pipe();
        update.atomic();
        if whole {
            update.del(&keys).ignore();
        }
        let counts = self.fanout.registry().presence_counts(whole);
        for (user, count) in counts.users {
            if count == 0 {
                update.hdel(&key, &*user).ignore();
            } else {
                update.hset(&key, &*user, count).ignore();
            }
        }
        let (topics, topic_counts) = (names.topics(instance), names.topic_counts(instance));
        for (topic, count) in counts.topics {
            write_count(&mut update, (&topics, &topic_counts), &topic, count);
        }
        let (members, member_counts) = (names.members(instance), names.member_counts(instance));
        for (topic, user, count) in counts.members {
            let member = member_name(&topic, &user);
            write_count(&mut update, (&members, &member_counts), &member, count);
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        update.hset(&key, TOTAL_FIELD, self.fanout.total()).ignore();
        for key in &keys {
            update
                .pexpire(key, i64::try_from(ttl_ms).unwrap_or(i64::MAX))
                .ignore();
        }
        // Instances whose presence expired are removed by the survivor that claims them
        // (`Holders::maintain`), which releases what they held first.
        update
            .zadd(names.instances(), instance, unix_millis() + ttl_ms)
            .ignore();
        self.commands.pipeline(&update).await
    }

    /// Records this instance's retention for every publisher, for as long as its
    /// presence, so that a process that only publishes keeps the history this instance's
    /// clients resume from.
    async fn record_retention(&mut self, ttl: Duration) -> redis::RedisResult<()> {
        let names = &self.shared.names;
        let retention = self.shared.options.retention;
        let max_age_ms = u64::try_from(retention.max_age.as_millis()).unwrap_or(u64::MAX);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = self.record_retention.prepare_invoke();
        invocation
            .key(names.retention_events())
            .key(names.retention_age())
            .arg(retention.max_events)
            .arg(max_age_ms.max(1))
            .arg(ttl_ms);
        let invocation = &invocation;
        let kept: Vec<u8> = self
            .commands
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        if kept.contains(&0) && !self.told_of_longer_retention {
            self.told_of_longer_retention = true;
            tracing::warn!(
                max_events = retention.max_events,
                max_age_seconds = retention.max_age.as_secs(),
                "another instance keeps a longer history; every publish keeps the longer one"
            );
        }
        Ok(())
    }
}

/// Writes that an instance has `count` streams of `name` into its sorted set of names
/// and its hash of counts, or removes `name` from both when it has none.
fn write_count(
    update: &mut redis::Pipeline,
    (index, counts): (&str, &str),
    name: &str,
    count: usize,
) {
    if count == 0 {
        update
            .zrem(index, name)
            .ignore()
            .hdel(counts, name)
            .ignore();
    } else {
        update
            .zadd(index, name, 0)
            .ignore()
            .hset(counts, name, count)
            .ignore();
    }
}

/// The name of a topic member in the presence: `TOPIC\nUSER`; no name holds a line feed,
/// and the members of one topic are a range of names, from `TOPIC\n` to before
/// `TOPIC\x0b`.
pub(super) fn member_name(topic: &str, user: &str) -> String {
    format!("{topic}\n{user}")
}
