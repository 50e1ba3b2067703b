//! Where a stream would start now: the cursor a page rendered now embeds, so that the
//! stream it opens later misses nothing published in between.

use super::Manager;
use crate::broker::History;
use crate::{Cursor, Error, Result, Subscription};

impl Manager {
    /// The cursor a stream of `user_id`, `topics` and the broadcasts would hold now: a
    /// stream opened later with it as `Last-Event-ID` (or `?last_event_id=`) gets every
    /// event published to those targets after this call, in order, and none from before.
    ///
    /// This is "render, then stream": an application reads its state from its database,
    /// takes the cursor, and writes both into the page; the page opens its stream from
    /// the cursor (`Sseor.connect({ cursor })` in `sseor.js`), so that what was published
    /// while the page was on its way arrives first. Take the cursor before reading the
    /// state: an event published in between then arrives once more rather than never.
    ///
    /// ```
    /// use axum::http::Request;
    /// use sseor::{Event, Manager, Subscription};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// let manager = Manager::new("").await?;
    /// manager.publish("user123", Event::new("order.created")).await?; // in the page
    /// let cursor = manager.cursor("user123", &["prices"]).await?;
    /// manager.publish("user123", Event::new("order.shipped")).await?; // not yet
    ///
    /// // The page's stream, opened from the cursor, starts with `order.shipped`.
    /// let request = Request::get("/events").header("last-event-id", &cursor).body(()).unwrap();
    /// let stream = manager.handle_sse_with(&request, Subscription::user("user123")?.topic("prices")?)?;
    /// assert_eq!(stream.headers()["content-type"], "text/event-stream");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As opening that stream: [`Error::InvalidTarget`] for a malformed user id or topic,
    /// or more topics than [`Builder::max_topics`](crate::Builder::max_topics);
    /// [`Error::Closed`] once the manager is closed; [`Error::Broker`] when the broker
    /// cannot tell where the targets stand (Redis unreachable).
    pub async fn cursor(&self, user_id: &str, topics: &[&str]) -> Result<String> {
        let subscription = topics
            .iter()
            .try_fold(Subscription::user(user_id)?, |s, topic| s.topic(topic))?;
        self.inner
            .config
            .input
            .check_topics(&subscription.targets)?;
        if self.is_closed() {
            return Err(Error::Closed);
        }
        // Starting live everywhere reads each target's position and nothing else.
        let live = subscription
            .targets
            .into_iter()
            .map(|t| (t, None))
            .collect();
        match self.inner.broker.resume(live).await {
            History::Events { positions, .. } => Ok(Cursor::at(positions).to_string()),
            // A stream starting live gets a reset only when the positions cannot be read:
            // the zeros that come with it would replay whole histories.
            History::Reset { reason, .. } => Err(Error::Broker(reason)),
        }
    }
}
