//! A handle for services that publish events but serve no streams (the Go original's "Service C").

use crate::broker::redis::{RedisOptions, RedisPublisher};
use crate::{BatchResults, Disconnect, Disconnected, Error, Event, Published, Result, Target};

/// Publishes to the streams of every sseor instance through Redis, holding one
/// multiplexed connection that reconnects by itself.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> sseor::Result<()> {
/// use serde_json::json;
/// let publisher = sseor::Publisher::new("redis://localhost:6379/5").await?;
/// let event = sseor::Event::new("transaction.updated").with_data(json!({"amount": 500.0}));
/// let published = publisher.publish("user123", event).await?;
/// // The event's position in user123's sequence, and how many instances received it.
/// println!("event {:?} reached {:?} instances", published.id, published.instances);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Publisher {
    redis: RedisPublisher,
}

impl Publisher {
    /// A publisher on the Redis at `url`, with the default key prefix `sseor`.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a URL that is not a Redis URL, [`Error::Broker`] when Redis
    /// refuses the credentials.
    pub async fn new(url: &str) -> Result<Self> {
        Self::with_options(url, RedisOptions::default()).await
    }

    /// A publisher with explicit options (key prefix, timeout).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub async fn with_options(url: &str, options: RedisOptions) -> Result<Self> {
        if !url.contains("://") || url.starts_with("memory://") {
            return Err(Error::InvalidUrl(
                "a Publisher needs a Redis URL (redis://, rediss://, redis+unix://, redis+sentinel:// or redis+cluster://)".into(),
            ));
        }
        Ok(Self {
            redis: RedisPublisher::connect(url, &options).await?,
        })
    }

    /// Sends `event` to every connection of `user_id`, on every instance.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] or [`Error::InvalidEvent`] for bad input (nothing is sent),
    /// [`Error::Broker`] when Redis cannot take it.
    pub async fn publish(&self, user_id: &str, event: Event) -> Result<Published> {
        self.publish_to(Target::user(user_id)?, event).await
    }

    /// Sends `event` to every connection that joined `topic`.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_to_topic(&self, topic: &str, event: Event) -> Result<Published> {
        self.publish_to(Target::topic(topic)?, event).await
    }

    /// Sends `event` to every connection.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_to_all(&self, event: Event) -> Result<Published> {
        self.publish_to(Target::All, event).await
    }

    /// Sends `event` to `target`.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_to(&self, target: Target, event: Event) -> Result<Published> {
        event.validate()?;
        self.redis.publish(&target, &event).await
    }

    /// Ends the streams `disconnect` names on every instance, as
    /// [`Manager::disconnect`](crate::Manager::disconnect) does; this publisher has no
    /// streams of its own, so `disconnected` is 0 and `instances` says how many received
    /// it.
    ///
    /// # Errors
    /// [`Error::Broker`] when Redis cannot take it.
    pub async fn disconnect(&self, disconnect: Disconnect) -> Result<Disconnected> {
        let instances = self.redis.send_disconnect(&disconnect, None).await?;
        Ok(Disconnected::new(0, Some(instances)))
    }

    /// Sends each event of `items` to its target, as
    /// [`Manager::publish_batch`](crate::Manager::publish_batch) does: every item checked
    /// before any is sent, then the items published together, in their order within each
    /// target, with one result per item. At most [`MAX_BATCH_EVENTS`](crate::MAX_BATCH_EVENTS)
    /// items.
    ///
    /// # Errors
    /// As [`Manager::publish_batch`](crate::Manager::publish_batch), [`Error::Closed`] aside.
    pub async fn publish_batch(&self, items: Vec<(Target, Event)>) -> Result<BatchResults> {
        crate::batch::validate(&items, crate::MAX_BATCH_EVENTS)?;
        let published = crate::batch::publish_in_order(items, |target, event| async move {
            self.redis.publish(&target, &event).await
        });
        Ok(published.await)
    }
}
