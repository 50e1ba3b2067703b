//! Ending a user's streams on every instance: a ban, a revoked session.

use super::Manager;
use crate::{Disconnect, Disconnected, Error, Fanout, Result};

impl Manager {
    /// Ends the streams of a user on every instance that shares the broker (only those
    /// that joined a topic, when the [`Disconnect`] names one). Each stream receives a
    /// last event, [`DISCONNECT_EVENT`](crate::DISCONNECT_EVENT), with the reason and
    /// whether its client may reconnect, after every event queued for it before (on Redis,
    /// after every event published to the user before this call), and then ends cleanly.
    /// Returns how many streams of this instance were ended and, on Redis, how many
    /// instances received it.
    ///
    /// It ends the streams open now: an application that bans a user also refuses the
    /// user's new streams, in its own authentication.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// use sseor::Disconnect;
    /// let manager = sseor::Manager::new("").await?;
    /// let done = manager.disconnect(Disconnect::user("user123")?.reason("banned")?).await?;
    /// assert_eq!((done.disconnected, done.instances), (0, None)); // nobody is connected
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`] once closed, [`Error::Broker`] when the broker cannot carry it
    /// (Redis unreachable): then no stream was ended here.
    pub async fn disconnect(&self, disconnect: Disconnect) -> Result<Disconnected> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        match self.inner.broker.disconnect(disconnect.clone()).await? {
            Some(done) => Ok(done),
            None => {
                let fanout = Fanout::new(self.inner.registry.clone());
                Ok(Disconnected::new(fanout.disconnect(&disconnect), None))
            }
        }
    }
}
