//! The queue of one stream: frames the registry hands over, waiting for the socket.
//!
//! A bounded queue that holds no memory while empty and grows only as frames wait: most
//! streams are idle most of the time, and a channel that reserves its slots up front
//! (tokio's allocates 32 at once) would cost more than everything else an idle stream
//! keeps.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

/// Encoded bytes queued for one stream, with the sequence number of the event they carry
/// (0 for comments and heartbeats), so that a resuming stream can skip what its replay
/// already sent.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) seq: u64,
    pub(crate) bytes: Bytes,
}

/// A queue that kept more than this many slots after a burst gives them back once
/// drained.
const KEEP_SLOTS: usize = 16;

/// A queue of at most `capacity` frames: the sending half (cloned into every table of the
/// registry that holds the stream) and the receiving half (the stream).
pub(crate) fn bounded(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        capacity: capacity.max(1),
        state: Mutex::new(State {
            frames: VecDeque::new(),
            waker: None,
            senders: 1,
            receiver_gone: false,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared {
    capacity: usize,
    state: Mutex<State>,
}

struct State {
    frames: VecDeque<Queued>,
    /// The stream waiting for a frame.
    waker: Option<Waker>,
    senders: usize,
    receiver_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is complete under the lock, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The queue holds `capacity` frames: the stream is not keeping up.
    Full,
    /// The stream is gone.
    Closed,
}

/// The sending half; the stream ends once every sender is dropped and its queue drained.
pub(crate) struct Sender {
    shared: Arc<Shared>,
}

impl Sender {
    /// Queues `frame` unless the queue is full or the stream gone.
    pub(crate) fn try_send(&self, frame: Queued) -> Result<(), SendError> {
        let waker = {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return Err(SendError::Closed);
            }
            if state.frames.len() >= self.shared.capacity {
                return Err(SendError::Full);
            }
            state.frames.push_back(frame);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The receiving half, read by the stream.
pub(crate) struct Receiver {
    shared: Arc<Shared>,
}

impl Receiver {
    /// The next frame; `None` once every sender is gone and the queue is drained.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Queued>> {
        let mut state = self.shared.lock();
        if let Some(frame) = pop(&mut state) {
            return Poll::Ready(Some(frame));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The next frame if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Queued> {
        pop(&mut self.shared.lock())
    }
}

fn pop(state: &mut State) -> Option<Queued> {
    let frame = state.frames.pop_front()?;
    if state.frames.is_empty() && state.frames.capacity() > KEEP_SLOTS {
        state.frames = VecDeque::new();
    }
    Some(frame)
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        // Frames nobody will read: free them now, not when the last sender goes.
        state.frames = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    fn frame(seq: u64) -> Queued {
        Queued {
            seq,
            bytes: Bytes::from_static(b"data: x\n\n"),
        }
    }

    #[tokio::test]
    async fn delivers_in_order_up_to_capacity_then_ends_with_the_last_sender() {
        let (tx, mut rx) = bounded(2);
        let other = tx.clone();
        tx.try_send(frame(1)).unwrap();
        other.try_send(frame(2)).unwrap();
        assert_eq!(tx.try_send(frame(3)), Err(SendError::Full));
        assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await.unwrap().seq, 1);
        tx.try_send(frame(3)).unwrap();
        drop((tx, other));
        assert_eq!(rx.try_recv().unwrap().seq, 2);
        assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await.unwrap().seq, 3);
        assert!(poll_fn(|cx| rx.poll_recv(cx)).await.is_none());
    }

    #[tokio::test]
    async fn wakes_a_waiting_receiver() {
        let (tx, mut rx) = bounded(4);
        let waiting = tokio::spawn(async move { poll_fn(|cx| rx.poll_recv(cx)).await });
        tokio::task::yield_now().await;
        tx.try_send(frame(7)).unwrap();
        assert_eq!(waiting.await.unwrap().unwrap().seq, 7);
    }

    #[test]
    fn refuses_frames_once_the_receiver_is_gone_and_gives_back_burst_memory() {
        let (tx, mut rx) = bounded(1000);
        for seq in 0..100 {
            tx.try_send(frame(seq)).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert_eq!(tx.shared.lock().frames.capacity(), 0);
        drop(rx);
        assert_eq!(tx.try_send(frame(1)), Err(SendError::Closed));
    }
}
