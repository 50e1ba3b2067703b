//! Who is connected across every instance: a user, the users of a topic, the topics.

use super::Manager;
use crate::presence::MAX_PRESENCE_PAGE;
use crate::{PresencePage, Result, Target, TopicPresence, UserPresence};

impl Manager {
    /// Whether `user_id` has a stream open on any instance, and how many (with Redis: the
    /// other instances' presence, refreshed every third of the
    /// [presence TTL](crate::Builder::redis_presence_ttl), and this instance's streams
    /// now; on the embedded broker: this instance's streams).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// let manager = sseor::Manager::new("").await?;
    /// let presence = manager.presence_of_user("user123").await?;
    /// assert!(!presence.online());
    /// assert_eq!(presence.connections, 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidTarget`](crate::Error::InvalidTarget) for a user id that is not
    /// one, [`Error::Broker`](crate::Error::Broker) when Redis cannot be read.
    pub async fn presence_of_user(&self, user_id: &str) -> Result<UserPresence> {
        Target::user(user_id)?;
        let connections = self.cluster_connection_count(user_id).await?;
        Ok(UserPresence::new(user_id, connections))
    }

    /// The users whose streams joined `topic`, on every instance, by user id (as bytes)
    /// after `after`, at most `limit` (1 to [`MAX_PRESENCE_PAGE`]), each with the number
    /// of their streams in the topic; `more` says whether others follow: ask again with
    /// the last user id as `after`. Streams without a user count in
    /// [`topics`](Self::topics) only.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// let manager = sseor::Manager::new("").await?;
    /// let page = manager.presence_of_topic("prices", None, 100).await?;
    /// assert!(page.items.is_empty() && !page.more);
    /// // The next page starts after the last user of this one.
    /// let after = page.items.last().map(|user| user.user_id.as_str());
    /// let next = manager.presence_of_topic("prices", after, 100).await?;
    /// # drop(next); Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidTarget`](crate::Error::InvalidTarget) for a topic that is not one,
    /// [`Error::Broker`](crate::Error::Broker) when Redis cannot be read.
    pub async fn presence_of_topic(
        &self,
        topic: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PresencePage<UserPresence>> {
        let target = Target::topic(topic)?;
        let limit = limit.clamp(1, MAX_PRESENCE_PAGE);
        let broker = &self.inner.broker;
        let asked = (topic.to_owned(), after.map(str::to_owned));
        if let Some(page) = broker.topic_presence(asked.0, asked.1, limit).await? {
            return Ok(page);
        }
        let users = self.inner.registry.topic_users(&target, after, limit + 1);
        Ok(page_of(users, limit))
    }

    /// The topics that have streams on any instance, by name (as bytes) after `after`, at
    /// most `limit` (1 to [`MAX_PRESENCE_PAGE`]), each with its number of streams; `more`
    /// says whether others follow.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// let manager = sseor::Manager::new("").await?;
    /// let page = manager.topics(None, 100).await?;
    /// for topic in &page.items {
    ///     println!("{}: {} streams", topic.topic, topic.connections);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when Redis cannot be read.
    pub async fn topics(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PresencePage<TopicPresence>> {
        let limit = limit.clamp(1, MAX_PRESENCE_PAGE);
        let after_owned = after.map(str::to_owned);
        if let Some(page) = self.inner.broker.topics(after_owned, limit).await? {
            return Ok(page);
        }
        let topics = self.inner.registry.topic_list(after, limit + 1);
        Ok(page_of(topics, limit))
    }
}

/// A page of the first `limit` of `items`, which holds up to one more to tell whether
/// more follow.
fn page_of<T>(mut items: Vec<T>, limit: usize) -> PresencePage<T> {
    let more = items.len() > limit;
    items.truncate(limit);
    PresencePage::new(items, more)
}
