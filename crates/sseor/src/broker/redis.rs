//! The Redis broker: events cross instances through Redis pub/sub.
//!
//! Each instance holds two connections whatever its number of clients: a multiplexed one
//! for commands (publish, probes) and one for subscriptions. It subscribes to a target's
//! channel only while it has local connections for that target, and resubscribes to all of
//! them after any reconnection. A probe it publishes to itself through Redis proves that
//! the whole path works; readiness follows the probe.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Client, ConnectionAddr, ErrorKind, RedisError, Script};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Broker, BrokerContext, History, Published, Retention};
use crate::position::{new_epoch, unix_millis};
use crate::{Error, Event, Fanout, Interest, Position, Result, Target};

/// Channels subscribed or unsubscribed in one command, at most.
const SUBSCRIBE_BATCH: usize = 1000;

/// The Lua that finds the epoch, or starts a new one from the candidate `ARGV[3]` when
/// Redis lost the clock or the epoch (emptied, restarted without persistence, a key
/// evicted): a position is never given twice, and one that the lost history held is
/// never taken for one of the new history. Scripts run one at a time, so of two
/// instances that find Redis empty, the first starts the epoch and the second uses it.
/// KEYS[1] is the clock and KEYS[2] the epoch.
macro_rules! epoch_lua {
    () => {
        r#"
local epoch = redis.call('GET', KEYS[2])
if not epoch or redis.call('EXISTS', KEYS[1]) == 0 then
  epoch = ARGV[3]
  redis.call('SET', KEYS[2], epoch)
end
"#
    };
}

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
const PUBLISH: &str = concat!(
    epoch_lua!(),
    r#"
if ARGV[6] ~= '' then
  local earlier = redis.call('GET', KEYS[4])
  if earlier then return {earlier, -1} end
end
local max_events = math.max(tonumber(ARGV[4]), tonumber(redis.call('GET', KEYS[6]) or '0'))
local max_age = math.max(tonumber(ARGV[5]), tonumber(redis.call('GET', KEYS[7]) or '0'))
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local last = tonumber(redis.call('HGET', KEYS[1], 'ms') or '0')
if ms < last then ms = last end
redis.call('HSET', KEYS[1], 'ms', string.format('%d', ms))
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local position = epoch .. '-' .. string.format('%d', ms) .. '-' .. seq
local payload = '{"id":"' .. position .. '",' .. string.sub(ARGV[1], 2)
redis.call('XADD', KEYS[3], string.format('%d', ms) .. '-' .. seq, 'e', payload)
-- Trim exactly, and remember the newest event trimmed, so that a client whose position
-- is older than that is told it missed events.
local trimmed = nil
local excess = redis.call('XLEN', KEYS[3]) - max_events
if excess > 0 then
  local gone = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', excess)
  trimmed = gone[#gone][1]
end
local oldest = ms - max_age
if oldest > 0 then
  local old = redis.call('XREVRANGE', KEYS[3], '(' .. string.format('%d', oldest) .. '-0', '-', 'COUNT', 1)
  if #old > 0 then
    local seq_of = function(id) return tonumber(string.match(id, '-(%d+)$')) end
    if trimmed == nil or seq_of(old[1][1]) > seq_of(trimmed) then trimmed = old[1][1] end
  end
end
local age = string.format('%d', max_age)
if trimmed then
  local trimmed_ms, trimmed_seq = string.match(trimmed, '^(%d+)-(%d+)$')
  redis.call('XTRIM', KEYS[3], 'MINID', trimmed_ms .. '-' .. (tonumber(trimmed_seq) + 1))
  redis.call('SET', KEYS[5], trimmed, 'PX', age)
end
redis.call('PEXPIRE', KEYS[3], age)
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[4], position, 'PX', age)
end
return {position, redis.call('PUBLISH', ARGV[2], payload)}
"#
);

/// The position the event sequence is at, starting a new epoch (from the candidate
/// `ARGV[3]`) when Redis lost the old one, as [`PUBLISH`] would: what an instance reads
/// when its subscription comes back, to tell whether its streams missed events.
/// KEYS: the clock, the epoch. ARGV: the epoch this instance knows and the highest
/// sequence number it saw in it (a Redis that restarted from a persistence file older
/// than that lost events, and would give their positions again: a new epoch too), the
/// candidate. Returns the epoch, the clock's `ms` and `seq`.
const SEQUENCE: &str = concat!(
    r#"
if redis.call('GET', KEYS[2]) == ARGV[1]
  and tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') < tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[2])
end
"#,
    epoch_lua!(),
    r#"
local ms = redis.call('HGET', KEYS[1], 'ms')
if not ms then
  local now = redis.call('TIME')
  ms = string.format('%d', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
  redis.call('HSET', KEYS[1], 'ms', ms)
end
return {epoch, ms, redis.call('HGET', KEYS[1], 'seq') or '0'}
"#
);

/// Records the retention of a serving instance for every publisher: each of the two keys
/// (KEYS: most events, longest time in ms; ARGV: this instance's values, then how long
/// the record lasts in ms) keeps the longest retention of the instances alive. A key is
/// only refreshed by an instance whose value is at least the one recorded, so that once
/// the instances that asked for more are gone, it expires and the others' takes over.
/// Returns, per key, 1 when this instance's value is recorded, 0 when a longer one is.
const RECORD_RETENTION: &str = r#"
local kept = {}
for i = 1, 2 do
  local recorded = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tonumber(ARGV[i]) >= recorded then
    redis.call('SET', KEYS[i], ARGV[i], 'PX', ARGV[3])
    kept[i] = 1
  else
    kept[i] = 0
  end
end
return kept
"#;

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
    /// ([`RedisBroker`]) is recorded in Redis, and every publish keeps the longer of its
    /// own and that one.
    pub retention: Retention,
    /// The largest message from another Redis client (one that sseor did not number) that
    /// is delivered, in bytes (default 64 KiB, the HTTP API's body limit); larger ones are
    /// dropped with a warning.
    pub foreign_message_limit: usize,
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
        }
    }
}

/// The names of channels and keys under a prefix:
/// channels `PREFIX:user:ID`, `PREFIX:topic:NAME`, `PREFIX:all`, `PREFIX:probe:INSTANCE`, and
/// the keys documented on each method.
#[derive(Debug, Clone)]
struct Names {
    prefix: String,
}

impl Names {
    fn channel(&self, target: &Target) -> String {
        format!("{}:{}", self.prefix, Self::suffix(target))
    }

    /// What names a target under each kind of key: `user:ID`, `topic:NAME`, `all`.
    fn suffix(target: &Target) -> String {
        match target {
            Target::User(user) => format!("user:{user}"),
            Target::Topic(topic) => format!("topic:{topic}"),
            Target::All => "all".to_owned(),
        }
    }

    fn target(&self, channel: &str) -> Option<Target> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        if rest == "all" {
            return Some(Target::All);
        }
        if let Some(user) = rest.strip_prefix("user:") {
            return Target::user(user).ok();
        }
        Target::topic(rest.strip_prefix("topic:")?).ok()
    }

    /// The hash that numbers events: `ms` (the last time used) and `seq`.
    fn clock(&self) -> String {
        format!("{}:clock", self.prefix)
    }

    /// Changes when the history is lost, so that old positions are recognized.
    fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// The stream of a target's last events.
    fn history(&self, target: &Target) -> String {
        format!("{}:history:{}", self.prefix, Self::suffix(target))
    }

    /// The id of the newest event trimmed from a target's history.
    fn trimmed(&self, target: &Target) -> String {
        format!("{}:trimmed:{}", self.prefix, Self::suffix(target))
    }

    /// Remembers that a publisher already sent the event with this id to this target:
    /// `PREFIX:sent:LEN:TARGET:ID`, where LEN is the length of `TARGET` in bytes, so that
    /// no other (target, id) pair gives the same key (`user:a:b` + `c` and `user:a` +
    /// `b:c` would otherwise both be `user:a:b:c`).
    fn publisher_id(&self, target: &Target, id: &str) -> String {
        let suffix = Self::suffix(target);
        format!("{}:sent:{}:{suffix}:{id}", self.prefix, suffix.len())
    }

    /// The most events per target that the serving instances keep.
    fn retention_events(&self) -> String {
        format!("{}:retention:events", self.prefix)
    }

    /// The longest time (ms) the serving instances keep events.
    fn retention_age(&self) -> String {
        format!("{}:retention:age", self.prefix)
    }

    fn probe(&self, instance: &str) -> String {
        format!("{}:probe:{instance}", self.prefix)
    }

    /// A hash of one instance's connections: user id -> count, and `""` -> total.
    fn presence(&self, instance: &str) -> String {
        format!("{}:presence:{instance}", self.prefix)
    }

    /// A sorted set of live instances, scored by when their presence expires (Unix ms).
    fn instances(&self) -> String {
        format!("{}:instances", self.prefix)
    }

    /// A stream ticket, by the digest it is kept under.
    fn ticket(&self, key: &str) -> String {
        format!("{}:ticket:{key}", self.prefix)
    }
}

/// The sequence number in a history stream entry's id, `MS-SEQ`.
fn stream_seq(id: &str) -> Option<u64> {
    id.rsplit_once('-').and_then(|(_, seq)| seq.parse().ok())
}

/// The sequence number and event of a history entry as the publish script writes it
/// (its one field `e` holding the event); `None` for anything else.
fn history_entry(id: &str, fields: &[(String, String)]) -> Option<(u64, Event)> {
    let seq = stream_seq(id).filter(|&seq| seq > 0)?;
    let [(name, json)] = fields else { return None };
    if name != "e" {
        return None;
    }
    let event = serde_json::from_str::<Event>(json).ok()?;
    Some((seq, event))
}

/// The presence field that holds an instance's total: no user id is empty.
const TOTAL_FIELD: &str = "";

/// What the instance knows of its subscription path.
#[derive(Debug, Default)]
struct Health {
    subscribed: bool,
    /// Whether the subscription failed and is not back yet (not merely not confirmed, as
    /// right after start).
    lost: bool,
    /// When the last probe came back.
    answered: Option<Instant>,
    /// When the oldest probe still unanswered was sent.
    waiting_since: Option<Instant>,
}

#[derive(Debug)]
struct Shared {
    names: Names,
    options: RedisOptions,
    health: Mutex<Health>,
    instance: String,
}

impl Shared {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn readiness(&self) -> std::result::Result<(), String> {
        let health = self.health();
        if !health.subscribed {
            return Err("not subscribed to Redis".into());
        }
        let limit = self.options.probe_interval * 3;
        match health.answered {
            None => Err("waiting for the first probe to come back through Redis".into()),
            Some(at) if at.elapsed() > limit => Err(format!(
                "no probe came back through Redis for {:.1} s",
                at.elapsed().as_secs_f64()
            )),
            Some(_) => Ok(()),
        }
    }

    fn probe_overdue(&self) -> bool {
        let limit = self.options.probe_interval * 3;
        self.health()
            .waiting_since
            .is_some_and(|since| since.elapsed() > limit)
    }
}

/// The publishing half of the Redis broker: a multiplexed command connection that
/// reconnects by itself. [`Publisher`](crate::Publisher) wraps it for services that serve
/// no streams.
#[derive(Clone)]
pub struct RedisPublisher {
    commands: Commands,
    names: Names,
    publish_script: Script,
    retention: Retention,
}

impl std::fmt::Debug for RedisPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPublisher")
            .field("prefix", &self.names.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisPublisher {
    /// Opens the client for `url` and its command connection.
    ///
    /// # Errors
    /// As [`RedisBroker::connect`].
    pub async fn connect(url: &str, options: &RedisOptions) -> Result<Self> {
        Self::open(url, options)
            .await
            .map(|(_, publisher)| publisher)
    }

    async fn open(url: &str, options: &RedisOptions) -> Result<(Arc<Endpoint>, Self)> {
        let endpoint = Arc::new(endpoint_for(url, options)?);
        check_credentials(&endpoint, options.timeout).await?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let publisher = Self {
            commands: Commands::new(endpoint.clone(), config),
            names: Names {
                prefix: options.prefix.clone(),
            },
            publish_script: Script::new(PUBLISH),
            retention: options.retention,
        };
        Ok((endpoint, publisher))
    }

    /// Publishes `event` to `target` on every instance; an event without an id gets the
    /// next id of the shared sequence.
    ///
    /// # Errors
    /// [`Error::Broker`] when Redis cannot be reached or does not answer in time.
    pub async fn publish(&self, target: &Target, event: &Event) -> Result<Published> {
        let mut event = event.clone();
        let publisher_id = event.id.take();
        let json = serde_json::to_string(&event)
            .map_err(|e| Error::InvalidEvent(format!("cannot be serialized: {e}")))?;
        let history = self.names.history(target);
        let remembered = publisher_id
            .as_deref()
            .map_or_else(|| history.clone(), |id| self.names.publisher_id(target, id));
        let max_age_ms = u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX);
        let mut invocation = self.publish_script.prepare_invoke();
        invocation
            .key(self.names.clock())
            .key(self.names.epoch())
            .key(history)
            .key(remembered)
            .key(self.names.trimmed(target))
            .key(self.names.retention_events())
            .key(self.names.retention_age())
            .arg(json)
            .arg(self.names.channel(target))
            // Drawn anew for every publish: a Redis that lost its data must get an epoch
            // it never had.
            .arg(new_epoch())
            .arg(self.retention.max_events)
            .arg(max_age_ms.max(1))
            .arg(publisher_id.unwrap_or_default());
        let invocation = &invocation;
        let (id, receivers): (String, i64) = self
            .commands
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await
            .map_err(unavailable)?;
        Ok(Published {
            id,
            delivered_locally: None,
            instances: usize::try_from(receivers).ok(),
            duplicate: receivers < 0,
        })
    }

    /// The position of the latest event published; `None` before the first one (or after
    /// Redis lost its data).
    async fn current(&self) -> Result<Option<Position>> {
        let mut state = redis::pipe();
        state
            .get(self.names.epoch())
            .hget(self.names.clock(), "ms")
            .hget(self.names.clock(), "seq");
        let (epoch, ms, seq): (Option<String>, Option<u64>, Option<u64>) =
            self.commands.pipeline(&state).await.map_err(unavailable)?;
        Ok(epoch.map(|epoch| Position::new(epoch, ms.unwrap_or(0), seq.unwrap_or(0))))
    }

    async fn history(&self, targets: &[Target], after: Option<&Position>) -> Result<History> {
        let current = self.current().await?;
        let reset = |reason: &str| {
            Ok(History::Reset {
                reason: reason.to_owned(),
                current: current.clone(),
            })
        };
        let Some(after) = after else {
            return reset("the last event id is not a position of this server");
        };
        let Some(now) = &current else {
            return reset("the history that position belongs to is gone (Redis lost its data)");
        };
        if after.epoch() != now.epoch() {
            return reset("the history that position belongs to is gone (Redis lost its data)");
        }
        if after.seq() > now.seq() {
            return reset("that position has not been reached yet");
        }
        if u128::from(unix_millis().saturating_sub(after.ms())) > self.retention.max_age.as_millis()
        {
            return reset("that position is older than the history kept");
        }
        let mut missed = Vec::new();
        for target in targets {
            let stream = self.names.history(target);
            if self.trimmed_after(target, after).await? {
                return reset("that position is older than the history kept");
            }
            let mut range = redis::cmd("XRANGE");
            range
                .arg(&stream)
                .arg(format!("({}-{}", after.ms(), after.seq()))
                .arg("+");
            let entries: Vec<(String, Vec<(String, String)>)> =
                self.commands.query(&range).await.map_err(unavailable)?;
            for (id, fields) in entries {
                // Skipping an entry would be a silent gap: what it held is unknown.
                let Some(entry) = history_entry(&id, &fields) else {
                    tracing::warn!(stream, entry = id, "history entry that is not an event");
                    return reset("the history holds an entry that cannot be read");
                };
                missed.push(entry);
            }
        }
        missed.sort_by_key(|(seq, _)| *seq);
        // Streams are read one after another while events keep coming: keep what the
        // position read first covers, and let later events come live.
        missed.retain(|(seq, _)| *seq <= now.seq());
        Ok(History::Events {
            events: missed,
            through: now.seq(),
        })
    }

    /// Whether the history of `target` lost, to trimming, an event after `after`. A
    /// history that expired whole lost nothing recent: it expires only when its newest
    /// event is older than the retention, and so is any position before it.
    async fn trimmed_after(&self, target: &Target, after: &Position) -> Result<bool> {
        let mut trimmed = redis::cmd("GET");
        trimmed.arg(self.names.trimmed(target));
        let trimmed: Option<String> = self.commands.query(&trimmed).await.map_err(unavailable)?;
        let trimmed_seq = trimmed.as_deref().and_then(stream_seq).unwrap_or(0);
        Ok(after.seq() < trimmed_seq)
    }
}

impl RedisPublisher {
    /// Keeps `value` under the ticket `key` for `ttl` (at least 1 ms).
    async fn put_ticket(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut set = redis::cmd("SET");
        set.arg(self.names.ticket(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms);
        self.commands.query::<()>(&set).await.map_err(unavailable)
    }

    /// Takes the value of the ticket `key` away: `GETDEL`, so that of two instances
    /// redeeming it at once, one gets it.
    async fn take_ticket(&self, key: &str) -> Result<Option<String>> {
        let mut take = redis::cmd("GETDEL");
        take.arg(self.names.ticket(key));
        self.commands.query(&take).await.map_err(unavailable)
    }

    /// Connections across every live instance: of `user_id`, or in all when `None`.
    ///
    /// # Errors
    /// [`Error::Broker`] when Redis cannot be reached.
    pub async fn cluster_connections(&self, user_id: Option<&str>) -> Result<usize> {
        self.stored_connections(user_id, None).await
    }

    /// Connections that live instances other than `except` stored in their presence: of
    /// `user_id`, or in all when `None`.
    async fn stored_connections(
        &self,
        user_id: Option<&str>,
        except: Option<&str>,
    ) -> Result<usize> {
        let mut live = redis::cmd("ZRANGEBYSCORE");
        live.arg(self.names.instances())
            .arg(unix_millis())
            .arg("+inf");
        let live: Vec<String> = self.commands.query(&live).await.map_err(unavailable)?;
        let others: Vec<&String> = live
            .iter()
            .filter(|&live| Some(live.as_str()) != except)
            .collect();
        if others.is_empty() {
            return Ok(0);
        }
        let mut counts = redis::pipe();
        for instance in others {
            counts.hget(
                self.names.presence(instance),
                user_id.unwrap_or(TOTAL_FIELD),
            );
        }
        let counts: Vec<Option<usize>> =
            self.commands.pipeline(&counts).await.map_err(unavailable)?;
        Ok(counts.into_iter().flatten().sum())
    }
}

/// Carries events between instances through Redis.
pub struct RedisBroker {
    publisher: RedisPublisher,
    shared: Arc<Shared>,
    fanout: Fanout,
    stop: CancellationToken,
    presence: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("prefix", &self.shared.names.prefix)
            .field("instance", &self.shared.instance)
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Connects to Redis at `url` and starts the subscription task, which delivers to the
    /// context's fan-out and follows its interest.
    ///
    /// A Redis that cannot be reached yet is not an error: the broker keeps trying, and is
    /// not ready until it succeeds.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a URL that does not parse, [`Error::Broker`] when Redis
    /// answers but refuses the credentials or the database.
    pub async fn connect(url: &str, context: BrokerContext, options: RedisOptions) -> Result<Self> {
        let fanout = context.fanout();
        let interest = context.interest();
        let (endpoint, publisher) = RedisPublisher::open(url, &options).await?;
        let shared = Arc::new(Shared {
            names: publisher.names.clone(),
            options,
            health: Mutex::default(),
            instance: instance_id(),
        });
        let stop = CancellationToken::new();
        let presence = Presence {
            commands: publisher.commands.clone(),
            shared: shared.clone(),
            fanout: fanout.clone(),
            record_retention: Script::new(RECORD_RETENTION),
            told_of_longer_retention: false,
        };
        let presence = tokio::spawn(presence.run(stop.clone()));
        let subscriber = Subscriber {
            endpoint,
            commands: publisher.commands.clone(),
            shared: shared.clone(),
            fanout: fanout.clone(),
            metrics: context.metrics(),
            interest,
            stop: stop.clone(),
            wanted: HashSet::new(),
            epoch: None,
            last_seen: 0,
            sequence_script: Script::new(SEQUENCE),
            foreign_epochs: HashSet::new(),
            dropped: DroppedLog::default(),
            barriers: Vec::new(),
        };
        tokio::spawn(subscriber.run());
        Ok(Self {
            publisher,
            shared,
            fanout,
            stop,
            presence: Mutex::new(Some(presence)),
        })
    }

    /// Stops publishing presence and removes it, so that the cluster-wide counts drop this
    /// instance at once rather than when its presence expires.
    async fn say_goodbye(&self) {
        let task = self
            .presence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(task) = task else { return };
        let _ = task.await;
        let instance = &self.shared.instance;
        let mut goodbye = redis::pipe();
        goodbye
            .del(self.shared.names.presence(instance))
            .ignore()
            .zrem(self.shared.names.instances(), instance)
            .ignore();
        let sent = tokio::time::timeout(
            self.shared.options.timeout,
            self.publisher.commands.pipeline::<()>(&goodbye),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!("presence not removed; it expires by itself");
        }
    }
}

/// Keeps this instance's connection counts in Redis, with an expiry, so that every
/// instance can count connections cluster-wide.
struct Presence {
    commands: Commands,
    shared: Arc<Shared>,
    fanout: Fanout,
    record_retention: Script,
    /// Whether the log already says that another instance keeps a longer history.
    told_of_longer_retention: bool,
}

impl Presence {
    async fn run(mut self, stop: CancellationToken) {
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
        }
    }

    async fn refresh(&self, whole: bool, ttl: Duration) -> redis::RedisResult<()> {
        let names = &self.shared.names;
        let key = names.presence(&self.shared.instance);
        let mut exists = redis::cmd("EXISTS");
        exists.arg(&key);
        let exists: bool = self.commands.query(&exists).await?;
        let whole = whole || !exists;
        let mut update = redis::pipe();
        update.atomic();
        if whole {
            update.del(&key).ignore();
        }
        for (user, count) in self.fanout.user_counts(whole) {
            if count == 0 {
                update.hdel(&key, &*user).ignore();
            } else {
                update.hset(&key, &*user, count).ignore();
            }
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let now = unix_millis();
        update
            .hset(&key, TOTAL_FIELD, self.fanout.total())
            .ignore()
            .pexpire(&key, i64::try_from(ttl_ms).unwrap_or(i64::MAX))
            .ignore()
            .zadd(names.instances(), &self.shared.instance, now + ttl_ms)
            .ignore()
            .zrembyscore(names.instances(), "-inf", now)
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

impl Broker for RedisBroker {
    fn publish(&self, target: Target, event: Event) -> BoxFuture<'_, Result<Published>> {
        Box::pin(async move { self.publisher.publish(&target, &event).await })
    }

    fn readiness(&self) -> std::result::Result<(), String> {
        self.shared.readiness()
    }

    fn outage(&self) -> Option<String> {
        let lost = self.shared.health().lost;
        lost.then(|| "the subscription to Redis is down; try again shortly".to_owned())
    }

    fn current(&self) -> BoxFuture<'_, Option<Position>> {
        Box::pin(async move { self.publisher.current().await.ok().flatten() })
    }

    fn history(&self, targets: Vec<Target>, after: Option<Position>) -> BoxFuture<'_, History> {
        Box::pin(async move {
            // The command connection may have just lost Redis and be reconnecting: a reset
            // would make every resuming client reload for nothing, so try again first.
            let mut attempt = 0;
            loop {
                match self.publisher.history(&targets, after.as_ref()).await {
                    Ok(history) => return history,
                    Err(e) if attempt >= 3 => {
                        return History::Reset {
                            reason: format!("the history cannot be read now ({e})"),
                            current: None,
                        };
                    }
                    Err(_) => {
                        attempt += 1;
                        tokio::time::sleep(self.shared.options.probe_interval / 2).await;
                    }
                }
            }
        })
    }

    fn cluster_connections(&self, user_id: Option<String>) -> BoxFuture<'_, Result<Option<usize>>> {
        Box::pin(async move {
            // This instance's presence in Redis lags behind its connections (refreshed
            // every few seconds): its own part is counted live instead.
            let others = self
                .publisher
                .stored_connections(user_id.as_deref(), Some(&self.shared.instance))
                .await?;
            let local = match user_id.as_deref() {
                Some(user) => Target::user(user).map_or(0, |user| self.fanout.count(&user)),
                None => self.fanout.total(),
            };
            Ok(Some(others + local))
        })
    }

    fn put_ticket(&self, key: String, value: String, ttl: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.publisher.put_ticket(&key, &value, ttl).await })
    }

    fn take_ticket(&self, key: String) -> BoxFuture<'_, Result<Option<String>>> {
        Box::pin(async move { self.publisher.take_ticket(&key).await })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.stop.cancel();
        Box::pin(self.say_goodbye())
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Where the Redis master is: at a fixed address, or wherever Sentinel says it is now.
enum Endpoint {
    Fixed(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

impl Endpoint {
    async fn client(&self) -> redis::RedisResult<Client> {
        match self {
            Self::Fixed(client) => Ok(client.clone()),
            Self::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }
}

fn endpoint_for(url: &str, options: &RedisOptions) -> Result<Endpoint> {
    if url.starts_with("rediss://") {
        // rustls needs one process-wide crypto provider; another part of the program may
        // have installed one already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        return sentinel_endpoint(rest);
    }
    let Some(ca_file) = &options.ca_file else {
        return Client::open(url)
            .map(Endpoint::Fixed)
            .map_err(|e| Error::InvalidUrl(describe(&e)));
    };
    let root_cert = std::fs::read(ca_file).map_err(|e| {
        Error::Broker(format!(
            "cannot read the Redis CA file {}: {e}",
            ca_file.display()
        ))
    })?;
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    Client::build_with_tls(url, certificates)
        .map(Endpoint::Fixed)
        .map_err(|e| Error::InvalidUrl(describe(&e)))
}

/// Parses what follows `redis+sentinel://`:
/// `[[user]:password@]host[:port][,host[:port]...]/service[/db]`. The credentials are the
/// master's; sentinels listen on 26379 unless told otherwise.
fn sentinel_endpoint(rest: &str) -> Result<Endpoint> {
    let invalid = |why: &str| Error::InvalidUrl(format!("redis+sentinel:// URL: {why}"));
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (Some(credentials), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid("expected /SERVICE after the sentinel addresses"))?;
    let mut path = path.split('/');
    let service = path
        .next()
        .filter(|service| !service.is_empty())
        .ok_or_else(|| invalid("the service (master) name is missing"))?;
    let db = match path.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse()
            .map_err(|_| invalid("the database is not a number"))?,
    };
    let sentinels = hosts
        .split(',')
        .map(|address| {
            let (host, port) = address.rsplit_once(':').unwrap_or((address, "26379"));
            let port = port
                .parse()
                .map_err(|_| invalid("a sentinel port is not a number"))?;
            if host.is_empty() {
                return Err(invalid("a sentinel host is empty"));
            }
            Ok(ConnectionAddr::Tcp(host.to_owned(), port))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut builder = SentinelClientBuilder::new(sentinels, service, SentinelServerType::Master)
        .map_err(|e| Error::InvalidUrl(describe(&e)))?
        .set_client_to_redis_db(db);
    if let Some((user, password)) = credentials.map(|c| c.split_once(':').unwrap_or((c, ""))) {
        if !user.is_empty() {
            builder = builder.set_client_to_redis_username(user);
        }
        if !password.is_empty() {
            builder = builder.set_client_to_redis_password(password);
        }
    }
    let sentinel = builder
        .build()
        .map_err(|e| Error::InvalidUrl(describe(&e)))?;
    Ok(Endpoint::Sentinel(tokio::sync::Mutex::new(sentinel)))
}

/// The multiplexed command connection. With Sentinel, a connection that fails or finds
/// itself on a replica is dropped, and the next command asks Sentinel for the master.
#[derive(Clone)]
struct Commands {
    endpoint: Arc<Endpoint>,
    config: ConnectionManagerConfig,
    current: Arc<tokio::sync::Mutex<Option<ConnectionManager>>>,
}

impl Commands {
    fn new(endpoint: Arc<Endpoint>, config: ConnectionManagerConfig) -> Self {
        Self {
            endpoint,
            config,
            current: Arc::default(),
        }
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let mut current = self.current.lock().await;
        if let Some(connection) = &*current {
            return Ok(connection.clone());
        }
        let client = self.endpoint.client().await?;
        let connection = client.get_connection_manager_lazy(self.config.clone())?;
        *current = Some(connection.clone());
        Ok(connection)
    }

    async fn run<T, F, Fut>(&self, command: F) -> redis::RedisResult<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let result = command(self.connection().await?).await;
        if let Err(error) = &result
            && matches!(*self.endpoint, Endpoint::Sentinel(_))
            && master_may_have_moved(error)
        {
            *self.current.lock().await = None;
        }
        result
    }

    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> redis::RedisResult<T> {
        self.run(|mut connection| async move { command.query_async(&mut connection).await })
            .await
    }

    async fn pipeline<T: redis::FromRedisValue>(
        &self,
        pipeline: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        self.run(|mut connection| async move { pipeline.query_async(&mut connection).await })
            .await
    }
}

fn master_may_have_moved(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.to_string().contains("READONLY")
}

/// Fails fast on what retrying cannot mend (credentials, database); lets an unreachable
/// Redis through, since it may come up later.
async fn check_credentials(endpoint: &Endpoint, timeout: Duration) -> Result<()> {
    let attempt = tokio::time::timeout(timeout, async {
        let client = endpoint.client().await?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        // Without a password, connecting succeeds and only commands fail: ask one.
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    })
    .await;
    match attempt {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if is_fatal(&e) => Err(Error::Broker(describe(&e))),
        Ok(Err(e)) => {
            tracing::warn!(error = %describe(&e), "Redis is not reachable yet; retrying in the background");
            Ok(())
        }
        Err(_) => {
            tracing::warn!("Redis did not answer in time; retrying in the background");
            Ok(())
        }
    }
}

fn is_fatal(error: &RedisError) -> bool {
    let text = error.to_string();
    matches!(
        error.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig
    ) || [
        "WRONGPASS",
        "NOAUTH",
        "DB index is out of range",
        "certificate",
        "UnknownIssuer",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

/// The error's own words: redis-rs never puts the URL's password in them.
fn describe(error: &RedisError) -> String {
    format!("Redis: {error}")
}

fn unavailable(error: RedisError) -> Error {
    Error::Broker(describe(&error))
}

fn instance_id() -> String {
    format!("{:016x}", crate::position::random())
}

/// Epochs of foreign messages remembered, at most.
const MAX_FOREIGN_EPOCHS: usize = 64;

/// The position a message starts with when sseor's publish script wrote it:
/// `{"id":"EPOCH-MS-SEQ",...`; read from its first bytes, without parsing the rest.
fn envelope_position(payload: &[u8]) -> Option<Position> {
    let rest = payload.strip_prefix(br#"{"id":""#)?;
    // An epoch of 32 characters and two numbers of 20 digits, with their dashes.
    let end = rest.iter().take(80).position(|&b| b == b'"')?;
    if rest.get(end + 1) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// Warns of foreign messages dropped for their size, at most once every 10 s.
#[derive(Debug, Default)]
struct DroppedLog {
    last_warned: Option<Instant>,
    since_warned: u64,
}

impl DroppedLog {
    fn note(&mut self, channel: &str, bytes: usize) {
        self.since_warned += 1;
        if self
            .last_warned
            .is_some_and(|at| at.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        tracing::warn!(
            channel,
            bytes,
            dropped = self.since_warned,
            "messages from other Redis clients over the size limit dropped"
        );
        self.last_warned = Some(Instant::now());
        self.since_warned = 0;
    }
}

/// The task that owns the subscription connection.
struct Subscriber {
    endpoint: Arc<Endpoint>,
    commands: Commands,
    shared: Arc<Shared>,
    fanout: Fanout,
    metrics: Arc<crate::metrics::Metrics>,
    interest: mpsc::UnboundedReceiver<Interest>,
    stop: CancellationToken,
    /// The channels this instance wants, whatever the state of the connection.
    wanted: HashSet<String>,
    /// The epoch of the events delivered here: only positions of this epoch are trusted.
    /// `None` until it was first read.
    epoch: Option<String>,
    /// The highest sequence number of `epoch` delivered or read here, to tell after a loss
    /// of the subscription whether events were published meanwhile.
    last_seen: u64,
    sequence_script: Script,
    /// Epochs of messages that turned out not to be sseor's, so that Redis is asked once.
    foreign_epochs: HashSet<String>,
    dropped: DroppedLog,
    /// Barriers that wait for the subscription to be back.
    barriers: Vec<crate::Barrier>,
}

enum SessionEnd {
    Stopped,
    Lost(String),
}

impl Subscriber {
    async fn run(mut self) {
        let mut delay = Duration::from_millis(100);
        let mut down_since: Option<Instant> = None;
        loop {
            let session = tokio::select! {
                () = self.stop.cancelled() => return,
                session = self.open() => session,
            };
            let reason = match session {
                Ok((sink, stream)) => {
                    if let Some(since) = down_since.take() {
                        tracing::info!(
                            channels = self.wanted.len(),
                            after_seconds = since.elapsed().as_secs_f64(),
                            "resubscribed to Redis"
                        );
                    } else {
                        tracing::info!(channels = self.wanted.len(), "subscribed to Redis");
                    }
                    self.release_if_missed().await;
                    delay = Duration::from_millis(100);
                    // Everything wanted is subscribed: waiting streams may read history.
                    self.pass_barriers();
                    match self.serve(sink, stream).await {
                        SessionEnd::Stopped => return,
                        SessionEnd::Lost(reason) => reason,
                    }
                }
                Err(reason) => reason,
            };
            {
                let mut health = self.shared.health();
                health.subscribed = false;
                health.lost = true;
            }
            if down_since.is_none() {
                down_since = Some(Instant::now());
                self.metrics.redis_reconnected();
                tracing::warn!(%reason, "Redis subscription down; reconnecting");
            } else {
                tracing::debug!(%reason, "Redis still unreachable");
            }
            if !self.wait(delay).await {
                return;
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Once subscribed: if anything was published while the subscription was down, this
    /// instance's clients may have missed it, so their streams end and they resume from
    /// history (a browser reconnects by itself, with `Last-Event-ID`). If Redis lost its
    /// data meanwhile (a new epoch), every stream gets a reset first: no position it holds
    /// can be resumed from.
    async fn release_if_missed(&mut self) {
        let Some(now) = self.read_sequence().await else {
            tracing::warn!("cannot tell what was missed; ending streams");
            self.fanout.release_all();
            return;
        };
        let Some(known) = self.epoch.clone() else {
            // The first subscription: no stream has seen anything yet.
            self.epoch = Some(now.epoch().to_owned());
            self.last_seen = now.seq();
            self.warn_if_evicting().await;
            return;
        };
        if known != now.epoch() {
            tracing::debug!(
                known,
                last_seen = self.last_seen,
                now = %now,
                "the epoch changed while the subscription was down"
            );
            let reason = "the event history was lost (Redis lost its data)";
            self.reset_all(reason, now.clone());
            self.epoch = Some(now.epoch().to_owned());
            self.last_seen = now.seq();
            return;
        }
        if now.seq() > self.last_seen {
            let released = self.fanout.release_all();
            tracing::info!(
                streams = released,
                "events may have been missed while the subscription was down; \
                 streams end so that their clients resume from history"
            );
        }
    }

    /// Says so when Redis may evict keys: an evicted history stream or trim marker would
    /// make a resume look complete when it is not. Managed Redis services often refuse
    /// `CONFIG`: then nothing is said.
    async fn warn_if_evicting(&self) {
        let mut config = redis::pipe();
        config
            .cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy");
        let Ok((limit, policy)) = self
            .commands
            .pipeline::<(Vec<String>, Vec<String>)>(&config)
            .await
        else {
            return;
        };
        let limited = limit.get(1).is_some_and(|bytes| bytes != "0");
        let policy = policy.get(1).map_or("", String::as_str);
        if limited && policy != "noeviction" && !policy.is_empty() {
            tracing::warn!(
                policy,
                "Redis may evict keys (maxmemory with an evicting policy): a history it \
                 evicts is lost without a reset; use maxmemory-policy noeviction"
            );
        }
    }

    /// The position the event sequence is at (a new epoch when Redis lost the old one);
    /// `None` when Redis cannot tell. The command connection may be reconnecting too:
    /// its first answers can be errors.
    async fn read_sequence(&self) -> Option<Position> {
        let mut invocation = self.sequence_script.prepare_invoke();
        invocation
            .key(self.shared.names.clock())
            .key(self.shared.names.epoch())
            .arg(self.epoch.as_deref().unwrap_or_default())
            .arg(self.last_seen)
            .arg(new_epoch());
        let invocation = &invocation;
        for _ in 0..3 {
            let read: redis::RedisResult<(String, u64, u64)> = self
                .commands
                .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
                .await;
            match read {
                Ok((epoch, ms, seq)) => return Some(Position::new(epoch, ms, seq)),
                Err(e) => tracing::debug!(error = %describe(&e), "sequence not read"),
            }
            tokio::time::sleep(self.shared.options.probe_interval / 2).await;
        }
        None
    }

    /// Sends every local stream a reset whose id is `current`, where its client resumes
    /// from, and ends the stream: its positions belong to a history that is gone, and
    /// what it missed of the new one cannot be told.
    fn reset_all(&self, reason: &str, current: Position) {
        let mut reset =
            Event::new(crate::RESET_EVENT).with_data(serde_json::json!({ "reason": reason }));
        reset.id = Some(current.to_string());
        // Every stream receives broadcasts: this reaches them all.
        if let Err(e) = self.fanout.deliver(&Target::All, 0, &reset) {
            tracing::warn!(error = %e, "reset not sent");
        }
        let released = self.fanout.release_all();
        tracing::warn!(
            streams = released,
            epoch = current.epoch(),
            "{reason}: every stream gets a reset and ends"
        );
    }

    /// Sleeps for `delay` while keeping track of interest; false when stopped.
    async fn wait(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = &mut sleep => return true,
                change = self.interest.recv() => match change {
                    Some(change) => { let _ = self.apply(change); }
                    None => return false,
                },
            }
        }
    }

    /// Records a change of interest; returns the channel and whether it is now wanted, or
    /// `None` for a barrier, which waits in `barriers` to be passed.
    fn apply(&mut self, change: Interest) -> Option<(String, bool)> {
        match change {
            Interest::Subscribe(target) => {
                let channel = self.shared.names.channel(&target);
                self.wanted.insert(channel.clone());
                Some((channel, true))
            }
            Interest::Unsubscribe(target) => {
                let channel = self.shared.names.channel(&target);
                self.wanted.remove(&channel);
                Some((channel, false))
            }
            Interest::Barrier(barrier) => {
                self.barriers.push(barrier);
                None
            }
        }
    }

    /// Everything asked before the pending barriers is in effect.
    fn pass_barriers(&mut self) {
        for barrier in self.barriers.drain(..) {
            barrier.pass();
        }
    }

    async fn open(&self) -> std::result::Result<(PubSubSink, redis::aio::PubSubStream), String> {
        let timeout = self.shared.options.timeout;
        let pubsub = tokio::time::timeout(timeout, async {
            self.endpoint.client().await?.get_async_pubsub().await
        })
        .await
        .map_err(|_| "Redis did not answer in time".to_owned())?
        .map_err(|e| describe(&e))?;
        let (mut sink, stream) = pubsub.split();
        let mut channels: Vec<String> = self.wanted.iter().cloned().collect();
        channels.push(self.shared.names.probe(&self.shared.instance));
        for batch in channels.chunks(SUBSCRIBE_BATCH) {
            tokio::time::timeout(timeout, sink.subscribe(batch))
                .await
                .map_err(|_| "SUBSCRIBE timed out".to_owned())?
                .map_err(|e| describe(&e))?;
        }
        let mut health = self.shared.health();
        health.subscribed = true;
        health.lost = false;
        health.answered = None;
        health.waiting_since = None;
        Ok((sink, stream))
    }

    async fn serve(
        &mut self,
        mut sink: PubSubSink,
        mut stream: redis::aio::PubSubStream,
    ) -> SessionEnd {
        let probe_channel = self.shared.names.probe(&self.shared.instance);
        let mut probes = tokio::time::interval(self.shared.options.probe_interval);
        probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return SessionEnd::Stopped,
                message = stream.next() => match message {
                    None => return SessionEnd::Lost("the subscription connection closed".into()),
                    Some(message) if message.get_channel_name() == probe_channel => self.probe_answered(),
                    Some(message) => self.deliver(message.get_channel_name(), message.get_payload_bytes()).await,
                },
                change = self.interest.recv() => {
                    let Some(change) = change else { return SessionEnd::Stopped };
                    if let Err(reason) = self.follow(&mut sink, change).await {
                        return SessionEnd::Lost(reason);
                    }
                }
                _ = probes.tick() => {
                    if self.shared.probe_overdue() {
                        return SessionEnd::Lost("probes stopped coming back".into());
                    }
                    self.send_probe(&probe_channel);
                }
            }
        }
    }

    /// Subscribes or unsubscribes for `first` and every change already queued behind it,
    /// in as few commands as possible.
    async fn follow(
        &mut self,
        sink: &mut PubSubSink,
        first: Interest,
    ) -> std::result::Result<(), String> {
        let mut subscribe = Vec::new();
        let mut unsubscribe = Vec::new();
        let mut next = Some(first);
        while let Some(change) = next {
            // A barrier waits in `barriers`: it is passed once this whole batch is sent.
            let Some((channel, wanted)) = self.apply(change) else {
                next = self.interest.try_recv().ok();
                continue;
            };
            if wanted {
                unsubscribe.retain(|c| c != &channel);
                subscribe.push(channel);
            } else {
                subscribe.retain(|c| c != &channel);
                unsubscribe.push(channel);
            }
            if subscribe.len() + unsubscribe.len() >= SUBSCRIBE_BATCH {
                break;
            }
            next = self.interest.try_recv().ok();
        }
        let timeout = self.shared.options.timeout;
        if !subscribe.is_empty() {
            tokio::time::timeout(timeout, sink.subscribe(&subscribe))
                .await
                .map_err(|_| "SUBSCRIBE timed out".to_owned())?
                .map_err(|e| describe(&e))?;
        }
        if !unsubscribe.is_empty() {
            tokio::time::timeout(timeout, sink.unsubscribe(&unsubscribe))
                .await
                .map_err(|_| "UNSUBSCRIBE timed out".to_owned())?
                .map_err(|e| describe(&e))?;
        }
        self.pass_barriers();
        Ok(())
    }

    async fn deliver(&mut self, channel: &str, payload: &[u8]) {
        let Some(target) = self.shared.names.target(channel) else {
            tracing::warn!(channel, "message on an unexpected channel skipped");
            return;
        };
        let position = self.own_position(payload).await;
        if position.is_none() && payload.len() > self.shared.options.foreign_message_limit {
            self.dropped.note(channel, payload.len());
            return;
        }
        let mut event = match serde_json::from_slice::<Event>(payload) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(channel, bytes = payload.len(), error = %e, "payload that is not an event skipped");
                return;
            }
        };
        let seq = match &position {
            Some(position) => {
                self.last_seen = self.last_seen.max(position.seq());
                position.seq()
            }
            None => {
                // What other Redis clients publish gets the checks of a publish; its id is
                // no position (a browser that sent it back would be reset), so the event
                // goes out without one.
                if let Err(e) = event.validate() {
                    tracing::warn!(channel, error = %e, "invalid event skipped");
                    return;
                }
                event.id = None;
                0
            }
        };
        if let Err(e) = self.fanout.deliver(&target, seq, &event) {
            tracing::warn!(channel, error = %e, "invalid event skipped");
        }
    }

    /// The position of a message that sseor's publish script numbered, in the epoch Redis
    /// holds; `None` for a message of another Redis client. A message of a new epoch (Redis
    /// lost its data while this instance stayed subscribed) resets every stream first.
    async fn own_position(&mut self, payload: &[u8]) -> Option<Position> {
        let position = envelope_position(payload)?;
        if self.epoch.as_deref() == Some(position.epoch()) {
            return Some(position);
        }
        if self.foreign_epochs.contains(position.epoch()) {
            return None;
        }
        let mut get = redis::cmd("GET");
        get.arg(self.shared.names.epoch());
        let stored = match self.commands.query::<Option<String>>(&get).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %describe(&e), "cannot tell whose message this is; sent without its id");
                return None;
            }
        };
        if stored.as_deref() != Some(position.epoch()) {
            if self.foreign_epochs.len() >= MAX_FOREIGN_EPOCHS {
                self.foreign_epochs.clear();
            }
            self.foreign_epochs.insert(position.epoch().to_owned());
            return None;
        }
        if self.epoch.is_some() {
            // Streams resume from just before this event: it and what follows is in the
            // new history; what came before it is what the reset stands for.
            let before = Position::new(
                position.epoch(),
                position.ms(),
                position.seq().saturating_sub(1),
            );
            self.reset_all("the event history was lost (Redis lost its data)", before);
        }
        self.epoch = Some(position.epoch().to_owned());
        self.last_seen = position.seq();
        self.foreign_epochs.clear();
        Some(position)
    }

    fn probe_answered(&self) {
        let mut health = self.shared.health();
        health.answered = Some(Instant::now());
        health.waiting_since = None;
    }

    fn send_probe(&self, channel: &str) {
        {
            let mut health = self.shared.health();
            health.waiting_since.get_or_insert_with(Instant::now);
        }
        let commands = self.commands.clone();
        let mut probe = redis::cmd("PUBLISH");
        probe.arg(channel).arg("probe");
        tokio::spawn(async move {
            let sent: redis::RedisResult<usize> = commands.query(&probe).await;
            if let Err(e) = sent {
                tracing::debug!(error = %describe(&e), "probe not sent");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_map_back_to_their_targets() {
        let names = Names {
            prefix: "app".into(),
        };
        for target in [
            Target::user("u:1").unwrap(),
            Target::topic("news").unwrap(),
            Target::All,
        ] {
            assert_eq!(names.target(&names.channel(&target)), Some(target));
        }
        assert_eq!(names.channel(&Target::user("u").unwrap()), "app:user:u");
        assert_eq!(names.target("other:user:u"), None);
        assert_eq!(names.target("app:seq"), None);
        assert_eq!(names.target("app:user:"), None);
    }

    #[test]
    fn publisher_id_keys_tell_every_target_and_id_apart() {
        let names = Names {
            prefix: "app".into(),
        };
        let key = |user: &str, id: &str| names.publisher_id(&Target::user(user).unwrap(), id);
        assert_ne!(key("a:b", "c"), key("a", "b:c"));
        assert_eq!(key("a", "b:c"), "app:sent:6:user:a:b:c");
    }

    #[test]
    fn only_the_publish_scripts_envelope_gives_a_position() {
        let position = |payload: &str| envelope_position(payload.as_bytes());
        assert_eq!(
            position(r#"{"id":"ab12-5-7","type":"t","data":{}}"#),
            Some(Position::new("ab12", 5, 7))
        );
        for other in [
            r#"{"type":"t","id":"ab12-5-7"}"#,
            r#"{"id":"ab12-5-7"}"#,
            r#"{"id": "ab12-5-7","type":"t"}"#,
            r#"{"id":"ext-1","type":"t"}"#,
            "not json",
        ] {
            assert_eq!(position(other), None, "{other}");
        }
    }
}
