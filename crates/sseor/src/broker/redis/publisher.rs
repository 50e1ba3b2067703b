//! Publishing through Redis: the command connection that numbers events with the publish
//! script, and keeps stream tickets.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManagerConfig;

use super::RedisOptions;
use super::commands::{Commands, Endpoint, check_credentials, endpoint_for, unavailable};
use super::keys::Names;
use super::scripts::PUBLISH;
use crate::broker::{Published, Retention};
use crate::position::new_epoch;
use crate::{Error, Event, Result, Target};

/// The publishing half of the Redis broker: a multiplexed command connection that
/// reconnects by itself. [`Publisher`](crate::Publisher) wraps it for services that serve
/// no streams.
#[derive(Clone)]
pub struct RedisPublisher {
    pub(super) commands: Commands,
    pub(super) names: Names,
    publish_script: Script,
    /// What this process keeps; every publish keeps the longer of it and the serving
    /// instances' retention.
    pub(super) retention: Retention,
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
