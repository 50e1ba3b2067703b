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

use crate::{Position, Target};

/// What happens to a stream whose client reads more slowly than events arrive, once its
/// queue is full (in events or in bytes).
///
/// Events dropped from a stream are not sent to it later, and are not replayed when its
/// client reconnects: the client's last event id is past them. Use [`Disconnect`] (the
/// default) when every event matters: the client reconnects and resumes from history.
///
/// [`Disconnect`]: SlowConsumer::Disconnect
///
/// ```
/// use sseor::{SlowConsumer, Subscription};
/// // A dashboard that only needs the newest value of each kind of event.
/// let subscription = Subscription::user("screen-7")?
///     .topic("prices")?
///     .slow_consumer(SlowConsumer::LatestPerType);
/// # Ok::<(), sseor::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Close the stream (and, on HTTP/1, its connection; on HTTP/2, only that stream).
    /// The client reconnects and resumes from history with `Last-Event-ID`, so that it
    /// loses nothing the history still holds.
    #[default]
    Disconnect,
    /// Drop the oldest waiting events to make room; the client stays connected and misses
    /// them.
    DropOldest,
    /// Keep only the newest waiting event of each type: an event replaces a waiting one of
    /// the same type. Still bounded: when the queue is full of distinct types, the oldest
    /// is dropped. For dashboards where only the latest value matters.
    LatestPerType,
}

impl SlowConsumer {
    /// The policy's name in configuration: `disconnect`, `drop-oldest` or
    /// `latest-per-type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disconnect => "disconnect",
            Self::DropOldest => "drop-oldest",
            Self::LatestPerType => "latest-per-type",
        }
    }
}

impl std::fmt::Display for SlowConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SlowConsumer {
    type Err = String;

    /// Parses `disconnect`, `drop-oldest` or `latest-per-type`.
    fn from_str(text: &str) -> Result<Self, String> {
        [Self::Disconnect, Self::DropOldest, Self::LatestPerType]
            .into_iter()
            .find(|policy| policy.as_str() == text)
            .ok_or_else(|| {
                format!("`{text}` is not a policy: use disconnect, drop-oldest or latest-per-type")
            })
    }
}

/// Encoded bytes for one stream, shared by every recipient: an event without its `id:`
/// line (which each stream writes from its own [`Cursor`](crate::Cursor)), a comment or a
/// heartbeat.
#[derive(Debug)]
pub(crate) struct Frame {
    /// What the frame moves the stream's cursor to; `None` for comments, heartbeats and
    /// events without a position (transient ones, those of other Redis clients).
    pub(crate) stamp: Option<Stamp>,
    pub(crate) bytes: Bytes,
    /// The event's type (`None` for comments), for [`SlowConsumer::LatestPerType`].
    pub(crate) kind: Option<Box<str>>,
}

/// How a frame moves the cursor of the stream that sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// An event at `Position` of `Target`: sent when it is news to the stream, skipped
    /// when the stream passed it already (its replay sent it).
    Event(Target, Position),
    /// A reset of `Target`: the stream stands at `Position` from now on, whatever it was.
    Reset(Target, Position),
    /// Sent with the cursor as it stands: the reset of a whole stream.
    Cursor,
}

impl Frame {
    /// A frame of bytes that move no cursor, such as a heartbeat.
    pub(crate) fn plain(bytes: Bytes) -> Queued {
        Arc::new(Self {
            stamp: None,
            bytes,
            kind: None,
        })
    }

    #[cfg(test)]
    pub(crate) fn seq(&self) -> u64 {
        match &self.stamp {
            Some(Stamp::Event(_, position) | Stamp::Reset(_, position)) => position.seq(),
            _ => 0,
        }
    }
}

/// What a queue holds: frames, shared.
pub(crate) type Queued = Arc<Frame>;

/// A queue that kept more than this many slots after a burst gives them back once
/// drained.
const KEEP_SLOTS: usize = 16;

/// How much one queue may hold, and what to do when it is full.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// The most frames waiting (at least 1).
    pub(crate) events: usize,
    /// The most bytes waiting, counted by frame length although the bytes are shared (at
    /// least 1). A single frame larger than this is still taken by an empty queue, so
    /// that a large event is not refused to every stream.
    pub(crate) bytes: usize,
    pub(crate) policy: SlowConsumer,
}

/// [`Bounds`] as every queue keeps them: in 32 bits, which is plenty for one connection's
/// backlog and keeps an idle stream's queue as small as before it had a byte bound.
#[derive(Debug, Clone, Copy)]
struct Compact {
    events: u32,
    bytes: u32,
    policy: SlowConsumer,
}

/// `n` in 32 bits, saturating.
fn small(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A queue bounded by `bounds`: the sending half (cloned into every table of the registry
/// that holds the stream) and the receiving half (the stream).
pub(crate) fn bounded(bounds: Bounds) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        bounds: Compact {
            events: small(bounds.events).max(1),
            bytes: small(bounds.bytes).max(1),
            policy: bounds.policy,
        },
        state: Mutex::new(State {
            frames: VecDeque::new(),
            bytes: 0,
            dropped: 0,
            waker: None,
            senders: 1,
            receiver_gone: false,
            last_queued: 0,
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
    bounds: Compact,
    state: Mutex<State>,
}

struct State {
    frames: VecDeque<Queued>,
    /// The length of every frame in `frames`, together (saturating).
    bytes: u32,
    /// Frames dropped to make room (drop-oldest, latest-per-type; saturating).
    dropped: u32,
    /// The stream waiting for a frame.
    waker: Option<Waker>,
    senders: u32,
    receiver_gone: bool,
    /// When a frame was last queued, on the registry's clock (milliseconds, wrapping):
    /// what heartbeats go by.
    last_queued: u32,
}

impl State {
    fn fits(&self, bounds: &Compact, len: u32) -> bool {
        self.frames.is_empty()
            || (self.frames.len() < bounds.events as usize
                && self.bytes.saturating_add(len) <= bounds.bytes)
    }

    fn push_back(&mut self, frame: Queued) {
        self.bytes = self.bytes.saturating_add(small(frame.bytes.len()));
        self.frames.push_back(frame);
    }

    fn pop_front(&mut self) -> Option<Queued> {
        let frame = self.frames.pop_front()?;
        self.bytes = self.bytes.saturating_sub(small(frame.bytes.len()));
        Some(frame)
    }

    fn quiet(&self, now: u32, since: u32) -> Quiet {
        if self.receiver_gone {
            Quiet::Gone
        } else if !self.frames.is_empty() {
            Quiet::Active(now)
        // Ages rather than times, so that the clock may wrap.
        } else if now.wrapping_sub(self.last_queued) < now.wrapping_sub(since) {
            Quiet::Active(self.last_queued)
        } else {
            Quiet::Silent
        }
    }

    fn count_dropped(&mut self) {
        self.dropped = self.dropped.saturating_add(1);
    }

    /// Removes the waiting frame of the same type as `frame`, if any.
    fn remove_same_kind(&mut self, frame: &Queued) -> bool {
        let Some(kind) = &frame.kind else {
            return false;
        };
        let Some(at) = self
            .frames
            .iter()
            .position(|queued| queued.kind.as_ref() == Some(kind))
        else {
            return false;
        };
        if let Some(replaced) = self.frames.remove(at) {
            self.bytes = self.bytes.saturating_sub(small(replaced.bytes.len()));
        }
        true
    }
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
    /// The queue is full and its policy is [`SlowConsumer::Disconnect`]: the stream is not
    /// keeping up.
    Full,
    /// The stream is gone.
    Closed,
}

/// Whether a stream has been silent, for heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// Nothing queued since the time asked about, and nothing waiting.
    Silent,
    /// The stream queued a frame at this time (now, when frames are waiting).
    Active(u32),
    /// The stream is gone.
    Gone,
}

/// The sending half; the stream ends once every sender is dropped and its queue drained.
pub(crate) struct Sender {
    shared: Arc<Shared>,
}

impl Sender {
    /// Queues `frame` at `now` (the registry's clock) unless the stream is gone, or the
    /// queue is full and its policy is to disconnect; under the other policies, older
    /// frames make room.
    pub(crate) fn try_send(&self, frame: Queued, now: u32) -> Result<(), SendError> {
        let bounds = &self.shared.bounds;
        let waker = {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return Err(SendError::Closed);
            }
            let len = small(frame.bytes.len());
            match bounds.policy {
                SlowConsumer::Disconnect if !state.fits(bounds, len) => {
                    return Err(SendError::Full);
                }
                SlowConsumer::Disconnect => {}
                SlowConsumer::LatestPerType | SlowConsumer::DropOldest => {
                    if bounds.policy == SlowConsumer::LatestPerType
                        && state.remove_same_kind(&frame)
                    {
                        state.count_dropped();
                    }
                    while !state.fits(bounds, len) && state.pop_front().is_some() {
                        state.count_dropped();
                    }
                }
            }
            state.push_back(frame);
            state.last_queued = now;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `frame` after everything waiting, whatever the queue's bounds and policy: the
    /// last frame of a stream the registry is letting go, which must reach its client after
    /// what was queued before it. One frame past the bounds, once per stream.
    pub(crate) fn send_last(&self, frame: Queued) {
        let waker = {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return;
            }
            state.push_back(frame);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the stream queued nothing after `since` and has nothing waiting, `now`.
    pub(crate) fn quiet(&self, now: u32, since: u32) -> Quiet {
        self.shared.lock().quiet(now, since)
    }

    /// Queues `frame` (a heartbeat) at `now` when the stream is [`quiet`](Self::quiet)
    /// since `since`: a stream that carried frames since needs no heartbeat, and one with
    /// frames waiting must not have events pushed out of a full queue by one. What it
    /// found: [`Quiet::Silent`] when it queued the heartbeat.
    pub(crate) fn heartbeat(&self, frame: Queued, now: u32, since: u32) -> Quiet {
        let waker = {
            let mut state = self.shared.lock();
            let quiet = state.quiet(now, since);
            if quiet != Quiet::Silent {
                return quiet;
            }
            state.push_back(frame);
            state.last_queued = now;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Quiet::Silent
    }

    /// Counts the stream as having carried something at `now`: its response head, when it
    /// opens, after which it is not silent.
    pub(crate) fn spoke_at(&self, now: u32) {
        self.shared.lock().last_queued = now;
    }

    /// How many frames were dropped to make room so far.
    pub(crate) fn dropped(&self) -> u32 {
        self.shared.lock().dropped
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
    let frame = state.pop_front()?;
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
        state.bytes = 0;
    }
}

#[cfg(test)]
mod tests;
