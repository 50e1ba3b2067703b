//! Disconnects through Redis: a control message on the user's own channel,
//! `{"disconnect": {"user_id": ..., "topic": ..., "reason": ..., "reconnect": ...}, "from": ...}`.
//!
//! The user's channel, because every instance with streams of the user is subscribed to it
//! (and only those need it), on a single Redis, behind Sentinel and, sharded, on a Redis
//! Cluster alike; and because Redis keeps the order of one channel: every event published
//! to the user before the disconnect reaches the streams before it. The message is no
//! event (an event has no field `disconnect`), so an instance that does not know it skips
//! it. `from` names the instance that sent it and a number there, so that the sender
//! learns how many of its own streams its subscriber ended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{RedisPublisher, Shared};
use crate::{Disconnect, Fanout, Result, Target};

/// A control message, as it travels on a user's channel.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Control {
    disconnect: Disconnect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
}

impl RedisPublisher {
    /// Sends `disconnect` to every instance that follows its user (has streams of it), as
    /// sent by `from` (`INSTANCE:NUMBER`), or by a service that serves no streams (`None`);
    /// returns how many instances received it.
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when Redis cannot be reached or does not
    /// answer in time.
    pub(crate) async fn send_disconnect(
        &self,
        disconnect: &Disconnect,
        from: Option<String>,
    ) -> Result<usize> {
        let message = message(disconnect, from);
        self.publish_raw(disconnect.user_target(), message).await
    }
}

/// The message that carries `disconnect`.
fn message(disconnect: &Disconnect, from: Option<String>) -> String {
    let control = Control {
        disconnect: disconnect.clone(),
        from,
    };
    // A struct of strings and a bool always serializes.
    serde_json::to_string(&control).unwrap_or_default()
}

/// The disconnects this instance sent and waits to see its own subscriber carry out, by
/// number.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    next: AtomicU64,
    answers: Mutex<HashMap<u64, oneshot::Sender<usize>>>,
}

/// A disconnect waiting for its answer; forgotten when dropped.
pub(super) struct Awaited {
    shared: Arc<Shared>,
    pub(super) number: u64,
    pub(super) answer: oneshot::Receiver<usize>,
}

impl Drop for Awaited {
    fn drop(&mut self) {
        self.shared.disconnects.lock().remove(&self.number);
    }
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<usize>>> {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A number for the next disconnect of `shared`'s instance, and where its answer comes.
    pub(super) fn expect(shared: &Arc<Shared>) -> Awaited {
        let number = shared.disconnects.next.fetch_add(1, Ordering::Relaxed);
        let (tx, answer) = oneshot::channel();
        shared.disconnects.lock().insert(number, tx);
        Awaited {
            shared: shared.clone(),
            number,
            answer,
        }
    }

    /// Tells the disconnect numbered `number` that `ended` local streams were ended.
    fn answer(&self, number: u64, ended: usize) {
        if let Some(waiting) = self.lock().remove(&number) {
            let _ = waiting.send(ended);
        }
    }
}

/// Carries out `payload` when it is a control message on `target`'s channel; false when
/// it is not one.
pub(super) fn obey(fanout: &Fanout, shared: &Shared, target: &Target, payload: &[u8]) -> bool {
    let Ok(Control { disconnect, from }) = serde_json::from_slice::<Control>(payload) else {
        return false;
    };
    if disconnect.user_target() != target {
        tracing::warn!(
            user = disconnect.user_id(),
            "a disconnect on another user's channel skipped"
        );
        return true;
    }
    let ended = fanout.disconnect(&disconnect);
    let own = from.as_deref().and_then(|from| {
        let (instance, number) = from.split_once(':')?;
        (instance == shared.instance).then(|| number.parse::<u64>().ok())?
    });
    if let Some(number) = own {
        shared.disconnects.answer(number, ended);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_message_is_never_read_as_an_event() {
        let disconnect = Disconnect::user("u").unwrap().reason("banned").unwrap();
        let text = message(&disconnect, Some("abc:7".into()));
        assert_eq!(
            text,
            r#"{"disconnect":{"user_id":"u","reason":"banned","reconnect":false},"from":"abc:7"}"#
        );
        assert!(serde_json::from_str::<crate::Event>(&text).is_err());
        let read: Control = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (read.disconnect, read.from.as_deref()),
            (disconnect, Some("abc:7"))
        );
    }
}
