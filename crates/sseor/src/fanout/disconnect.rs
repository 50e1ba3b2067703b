//! Ending the local streams a [`Disconnect`] names: each gets the disconnect event as the
//! last thing it writes, after whatever was queued for it before, then ends cleanly.

use std::sync::Arc;

use super::queue::Frame;
use super::{CloseReason, Fanout};
use crate::{Disconnect, encode};

impl Fanout {
    /// Ends every local stream `disconnect` names: the streams of its user (only those
    /// that joined its topic, when it has one). Each receives the
    /// [`DISCONNECT_EVENT`](crate::DISCONNECT_EVENT) after every frame queued before it,
    /// then ends cleanly once its queue is drained; logged and counted as
    /// [`CloseReason::Disconnected`]. Returns how many there were.
    ///
    /// A broker that spans instances calls it on each instance that receives the
    /// disconnect.
    pub fn disconnect(&self, disconnect: &Disconnect) -> usize {
        // The event is checked as it is built: its type is a constant, its reason checked.
        let Ok(bytes) = encode::event_without_id(&disconnect.event()) else {
            return 0;
        };
        // Without a stamp: it moves no cursor, and goes out without `id:`, so that a
        // client allowed back resumes from the last event it had.
        let last = Arc::new(Frame {
            stamp: None,
            bytes,
            kind: None,
        });
        let ended = self.registry.end_streams(
            disconnect.user_target(),
            disconnect.topic_target(),
            &last,
            CloseReason::Disconnected,
        );
        if ended > 0 {
            tracing::info!(
                user = disconnect.user_id(),
                topic = disconnect.topic_name(),
                reason = disconnect.reason_text(),
                streams = ended,
                "streams disconnected"
            );
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use bytes::Bytes;

    use super::*;
    use crate::fanout::queue::{self, Queued};
    use crate::fanout::registry::{Opening, Registration, Registry};
    use crate::fanout::{Limits, SlowConsumer};
    use crate::{DISCONNECT_EVENT, Target};

    fn open(
        registry: &Arc<Registry>,
        targets: &[Target],
        capacity: usize,
    ) -> (Registration, queue::Receiver) {
        let (tx, rx) = queue::bounded(queue::Bounds {
            events: capacity,
            bytes: 1 << 20,
            policy: SlowConsumer::Disconnect,
        });
        let opening = Opening {
            sink: crate::fanout::registry::Sink::new(tx, None),
            targets: targets.to_vec(),
            client_ip: None,
        };
        (registry.register(opening).unwrap(), rx)
    }

    fn plain(text: &'static str) -> Queued {
        Frame::plain(Bytes::from_static(text.as_bytes()))
    }

    /// Every frame of `rx` until the stream ends, as text; panics if it does not end.
    async fn to_the_end(rx: &mut queue::Receiver) -> Vec<String> {
        let mut frames = Vec::new();
        while let Some(frame) = poll_fn(|cx| rx.poll_recv(cx)).await {
            frames.push(String::from_utf8_lossy(&frame.bytes).into_owned());
        }
        frames
    }

    #[tokio::test]
    async fn the_reason_comes_after_a_full_queue_and_the_stream_then_ends() {
        let registry = Arc::new(Registry::new(Limits::default(), Arc::default()));
        let fanout = Fanout::new(registry.clone());
        let alice = Target::user("alice").unwrap();
        let (_kept, mut rx) = open(&registry, &[alice.clone(), Target::All], 2);
        assert_eq!(registry.deliver(&alice, &plain("one")), 1);
        assert_eq!(registry.deliver(&Target::All, &plain("two")), 1);

        let banned = Disconnect::user("alice").unwrap().reason("banned").unwrap();
        assert_eq!(fanout.disconnect(&banned), 1);
        assert_eq!(registry.deliver(&alice, &plain("after")), 0);
        let frames = to_the_end(&mut rx).await;
        assert_eq!(frames[..2], ["one", "two"]);
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert!(frames[2].starts_with(&format!("event: {DISCONNECT_EVENT}\nretry: 3600000\n")));
        assert!(frames[2].contains(r#""reason":"banned""#), "{frames:?}");
        assert_eq!(registry.total(), 0);
    }

    #[tokio::test]
    async fn only_the_users_streams_of_the_topic_end() {
        let registry = Arc::new(Registry::new(Limits::default(), Arc::default()));
        let fanout = Fanout::new(registry.clone());
        let [alice, bob, room] = [
            Target::user("alice").unwrap(),
            Target::user("bob").unwrap(),
            Target::topic("room").unwrap(),
        ];
        let (_in_room, mut in_room) = open(&registry, &[alice.clone(), room.clone()], 4);
        let (_elsewhere, mut elsewhere) = open(&registry, std::slice::from_ref(&alice), 4);
        let (_bob, mut bob_rx) = open(&registry, &[bob.clone(), room.clone()], 4);

        let kicked = Disconnect::user("alice")
            .unwrap()
            .topic("room")
            .unwrap()
            .reconnect(true);
        assert_eq!(fanout.disconnect(&kicked), 1);
        let frames = to_the_end(&mut in_room).await;
        assert!(frames[0].contains(r#""reconnect":true"#), "{frames:?}");
        assert!(!frames[0].contains("retry:"), "{frames:?}");
        assert_eq!(registry.count(&alice), 1);
        assert_eq!(registry.count(&room), 1);
        assert!(elsewhere.try_recv().is_none() && bob_rx.try_recv().is_none());
        assert_eq!(fanout.disconnect(&Disconnect::user("nobody").unwrap()), 0);
        // The others are still registered in full: a drain ends both.
        assert_eq!(registry.release_all(CloseReason::Drained), 2);
        assert_eq!(registry.total(), 0);
    }
}
