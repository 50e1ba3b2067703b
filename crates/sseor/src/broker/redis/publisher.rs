//! Publishing through Redis: the command connection that numbers events with the
//! `sseor_publish` function, and keeps stream tickets.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManagerConfig;

use super::RedisOptions;
use super::batch::{Batches, Numbered};
use super::commands::{Commands, check_credentials, describe, unavailable};
use super::endpoint::{Endpoint, endpoint_for};
use super::keys::Names;
use super::scripts::FUNCTIONS;
use crate::broker::{Published, Retention};
use crate::{Error, Event, Position, Result, Target};

/// The serving instances' retention before it is read: none, so that this process's own
/// applies.
const NOTHING_RECORDED: Retention = Retention {
    max_events: 0,
    max_age: Duration::ZERO,
    max_bytes: 0,
};

/// How long the serving instances' recorded retention is trusted before it is read again.
const RETENTION_READ_EVERY: Duration = Duration::from_secs(10);

/// The publishing half of the Redis broker: a multiplexed command connection that
/// reconnects by itself. [`Publisher`](crate::Publisher) wraps it for services that serve
/// no streams.
#[derive(Clone)]
pub struct RedisPublisher {
    pub(super) commands: Commands,
    pub(super) names: Names,
    /// What this process keeps; every publish keeps the longer of it and the serving
    /// instances' retention.
    pub(super) retention: Retention,
    /// The serving instances' retention as last read, and when.
    recorded: Arc<Mutex<(Option<Instant>, Retention)>>,
    wait_replicas: usize,
    timeout: Duration,
    /// The publishes waiting to go to Redis together.
    pub(super) batches: Arc<Batches>,
}

impl std::fmt::Debug for RedisPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPublisher")
            .field("prefix", &self.names.prefix())
            .finish_non_exhaustive()
    }
}

impl RedisPublisher {
    /// Opens the client for `url` and its command connection.
    ///
    /// # Errors
    /// As [`RedisBroker::connect`](super::RedisBroker::connect).
    pub async fn connect(url: &str, options: &RedisOptions) -> Result<Self> {
        Self::open(url, options)
            .await
            .map(|(_, publisher)| publisher)
    }

    /// The publisher, and where Redis is, for the subscription connection of a broker.
    pub(super) async fn open(url: &str, options: &RedisOptions) -> Result<(Arc<Endpoint>, Self)> {
        let endpoint = Arc::new(endpoint_for(url, options)?);
        check_credentials(&endpoint, options.timeout).await?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let publisher = Self {
            commands: Commands::new(endpoint.clone(), config),
            names: Names::new(&options.prefix),
            retention: options.retention,
            recorded: Arc::new(Mutex::new((None, NOTHING_RECORDED))),
            wait_replicas: options.wait_replicas,
            timeout: options.timeout,
            batches: Arc::default(),
        };
        // Bounded: a Redis not reachable yet must not hold the start up.
        let _ = tokio::time::timeout(options.timeout / 4, publisher.read_recorded_retention_now())
            .await;
        // A Redis not reachable yet gets the functions with the first publish.
        if let Err(e) = publisher.load_functions().await {
            if e.to_string().contains("unknown command") {
                return Err(Error::Broker(
                    "Redis 7 or newer is needed (FUNCTION LOAD is unknown to this one)".into(),
                ));
            }
            tracing::debug!(error = %describe(&e), "functions not loaded yet");
        }
        Ok((endpoint, publisher))
    }

    /// Loads (or replaces) the library of functions that number events, on every master.
    pub(super) async fn load_functions(&self) -> redis::RedisResult<()> {
        let mut load = redis::cmd("FUNCTION");
        load.arg("LOAD").arg("REPLACE").arg(FUNCTIONS);
        self.commands.query::<String>(&load).await.map(|_| ())
    }

    /// Publishes `event` to `target` on every instance: numbered in the target's sequence
    /// and kept in its history, or, for a transient event, with one `PUBLISH` (`SPUBLISH`
    /// on a cluster).
    ///
    /// # Errors
    /// [`Error::Broker`] when Redis cannot be reached or does not answer in time, or when
    /// fewer replicas than asked confirm the publish.
    pub async fn publish(&self, target: &Target, event: &Event) -> Result<Published> {
        let mut event = event.clone();
        let publisher_id = event.id.take();
        let json = serde_json::to_string(&event)
            .map_err(|e| Error::InvalidEvent(format!("cannot be serialized: {e}")))?;
        if event.transient {
            return Ok(Published {
                id: None,
                delivered_locally: None,
                instances: Some(self.publish_raw(target, json).await?),
                duplicate: false,
            });
        }
        let (epoch, seq, receivers) = if publisher_id.is_none() && !self.commands.is_cluster() {
            self.publish_batched(target, json).await?
        } else {
            let call = self.publish_call(target, &json, publisher_id.as_deref());
            let mut answers = self.answered(&call, 1).await?;
            answers.pop().unwrap_or_default()
        };
        Ok(Published {
            id: Some(Position::new(epoch, seq).to_string()),
            delivered_locally: None,
            instances: usize::try_from(receivers).ok(),
            duplicate: receivers < 0,
        })
    }

    /// Publishes `message` as it is on `target`'s channel, with one `PUBLISH` (`SPUBLISH`
    /// on a cluster): no number, no history. Returns how many instances received it.
    ///
    /// # Errors
    /// [`Error::Broker`] when Redis cannot be reached or does not answer in time.
    pub(super) async fn publish_raw(&self, target: &Target, message: String) -> Result<usize> {
        let mut publish = redis::cmd(if self.commands.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        });
        publish.arg(self.names.channel(target)).arg(message);
        let receivers: i64 = self.commands.query(&publish).await.map_err(unavailable)?;
        Ok(usize::try_from(receivers).unwrap_or(0))
    }

    /// The `FCALL` that publishes `json` to `target` (once for a publisher's id).
    fn publish_call(&self, target: &Target, json: &str, publisher_id: Option<&str>) -> redis::Cmd {
        let mut call = redis::cmd("FCALL");
        call.arg(if self.commands.is_cluster() {
            "sseor_publish_sharded"
        } else {
            "sseor_publish"
        })
        .arg(if publisher_id.is_some() { 3 } else { 2 })
        .arg(self.names.sequence(target))
        .arg(self.names.history(target));
        if let Some(id) = publisher_id {
            call.arg(self.names.publisher_id(target, id));
        }
        let (max_events, max_age_ms) = self.retention_args();
        call.arg(json)
            .arg(max_events)
            .arg(max_age_ms)
            .arg(crate::position::unix_millis());
        call
    }

    /// The retention every publish keeps, as the publish functions take it: the most
    /// events, and how long the history lasts in ms.
    pub(super) fn retention_args(&self) -> (usize, u64) {
        let retention = self.retention();
        let max_age_ms = u64::try_from(retention.max_age.as_millis()).unwrap_or(u64::MAX);
        (retention.max_events, max_age_ms.max(1))
    }

    /// Runs the publish `call` of `count` events (after `WAIT` when replicas must confirm
    /// it), loading the functions first when Redis lost them (restarted empty, a new
    /// master): for each event its epoch, number, and the instances that received it (-1:
    /// a publisher's id already seen).
    pub(super) async fn answered(&self, call: &redis::Cmd, count: usize) -> Result<Vec<Numbered>> {
        let mut pipeline = redis::pipe();
        pipeline.add_command(call.clone());
        if self.wait_replicas > 0 {
            let timeout_ms = u64::try_from(self.timeout.as_millis() / 2).unwrap_or(1000);
            pipeline
                .cmd("WAIT")
                .arg(self.wait_replicas)
                .arg(timeout_ms.max(1));
        }
        let replies: Vec<redis::Value> = self
            .with_functions(|| self.commands.pipeline(&pipeline))
            .await
            .map_err(unavailable)?;
        let mut replies = replies.into_iter();
        let unreadable = |e: &dyn std::fmt::Display| Error::Broker(format!("Redis: {e}"));
        let reply: String =
            redis::from_redis_value(replies.next().ok_or_else(|| unreadable(&"no reply"))?)
                .map_err(|e| unreadable(&e))?;
        let numbered: Option<Vec<Numbered>> = reply.lines().map(publish_reply).collect();
        let numbered = numbered
            .filter(|numbered| numbered.len() == count)
            .ok_or_else(|| unreadable(&format!("the publish function answered {reply:?}")))?;
        if self.wait_replicas > 0 {
            let confirmed: usize = replies
                .next()
                .map(redis::from_redis_value)
                .transpose()
                .map_err(|e| unreadable(&e))?
                .unwrap_or(0);
            if confirmed < self.wait_replicas {
                return Err(Error::Broker(format!(
                    "only {confirmed} of the {} Redis replicas asked for confirmed the \
                     publish in time; it may have reached clients: publish it again with \
                     the same id",
                    self.wait_replicas
                )));
            }
        }
        Ok(numbered)
    }

    /// Runs `attempt`, and once more after loading the functions when Redis does not know
    /// them (restarted empty, a replica promoted before they reached it).
    pub(super) async fn with_functions<T, F, Fut>(&self, attempt: F) -> redis::RedisResult<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match attempt().await {
            Err(e) if e.to_string().contains("Function not found") => {
                self.load_functions().await?;
                attempt().await
            }
            done => done,
        }
    }

    /// The retention a publish keeps: the longer of this process's and the serving
    /// instances', read again in the background every few seconds.
    fn retention(&self) -> Retention {
        let (read_at, recorded) = *self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        if read_at.is_none_or(|at| at.elapsed() >= RETENTION_READ_EVERY) {
            self.read_recorded_retention();
        }
        Retention {
            max_events: self.retention.max_events.max(recorded.max_events),
            max_age: self.retention.max_age.max(recorded.max_age),
            ..self.retention
        }
    }

    /// Reads the serving instances' retention again, in the background.
    fn read_recorded_retention(&self) {
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0 = Some(Instant::now());
        let publisher = self.clone();
        tokio::spawn(async move { publisher.read_recorded_retention_now().await });
    }

    /// Reads the serving instances' retention; keeps what it knew when Redis cannot tell.
    async fn read_recorded_retention_now(&self) {
        // Marked read now, so that the publishes meanwhile do not all ask again.
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0 = Some(Instant::now());
        let mut read = redis::cmd("MGET");
        read.arg(self.names.retention_events())
            .arg(self.names.retention_age());
        let Ok((events, age_ms)) = self
            .commands
            .query::<(Option<usize>, Option<u64>)>(&read)
            .await
        else {
            return;
        };
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1 = Retention {
            max_events: events.unwrap_or(0),
            max_age: Duration::from_millis(age_ms.unwrap_or(0)),
            max_bytes: 0,
        };
    }

    /// Keeps `value` under the ticket `key` for `ttl` (at least 1 ms).
    pub(super) async fn put_ticket(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
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
    pub(super) async fn take_ticket(&self, key: &str) -> Result<Option<String>> {
        let mut take = redis::cmd("GETDEL");
        take.arg(self.names.ticket(key));
        self.commands.query(&take).await.map_err(unavailable)
    }
}

/// The epoch, number and receivers in the publish function's answer, `EPOCH-SEQ
/// RECEIVERS` (`EPOCH:SEQ` in the ids it remembered before).
fn publish_reply(reply: &str) -> Option<(u32, u64, i64)> {
    let (position, receivers) = reply.split_once(' ')?;
    let (epoch, seq) = position
        .split_once('-')
        .or_else(|| position.split_once(':'))?;
    Some((
        epoch.parse().ok()?,
        seq.parse().ok()?,
        receivers.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::publish_reply;

    #[test]
    fn the_publish_functions_answer_is_read() {
        assert_eq!(publish_reply("12-345 2"), Some((12, 345, 2)));
        assert_eq!(publish_reply("12-345 -1"), Some((12, 345, -1)));
        assert_eq!(publish_reply("12:345 -1"), Some((12, 345, -1)));
        assert_eq!(publish_reply("12-345"), None);
        assert_eq!(publish_reply("x-345 1"), None);
    }
}
