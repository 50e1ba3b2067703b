//! The body of one SSE response: the bytes queued for its stream, until the registry
//! lets it go or the client leaves. Under any server it is an `http_body::Body`; under
//! sseor's own loop it may be handed over and written to the socket directly (see
//! [`handoff`](super::handoff)).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::{HeaderValue, Response, header};
use http_body::{Body, Frame};

use super::handoff;
use crate::fanout::queue::{self, Queued, Stamp};
use crate::fanout::registry::Registration;
use crate::{Cursor, Position, Target};

/// Where a stream starts, and what it sends before it goes live.
pub(crate) struct Replay {
    /// Each target at the position the client stood at, or (for a target it starts live
    /// in) where the target is now.
    pub(crate) cursor: Cursor,
    /// The events the client missed, in order, or a reset.
    pub(crate) frames: Vec<Queued>,
    /// Where each target stood when the history was read: the stream passes it, so that
    /// live events the replay covered are not sent twice.
    pub(crate) through: Vec<(Target, Position)>,
    /// The targets the stream starts live in (no cursor held them).
    pub(crate) live: Vec<Target>,
}

/// Streams a stream's queue, each event after an `id:` line written from the stream's
/// cursor; unregisters the stream when dropped, which is when the client goes away or
/// the response ends.
pub(crate) struct EventBody {
    /// Frames to send before anything else: the opening `retry:`, then the replay.
    pending: VecDeque<Bytes>,
    /// Where the stream starts: nothing is sent before it is settled.
    replay: Option<BoxFuture<'static, Replay>>,
    /// Where the stream stands in each of its targets.
    cursor: Cursor,
    queue: queue::Receiver,
    registration: Registration,
}

impl EventBody {
    pub(crate) fn new(
        opening: Bytes,
        replay: BoxFuture<'static, Replay>,
        queue: queue::Receiver,
        registration: Registration,
    ) -> Self {
        Self {
            pending: VecDeque::from([opening]),
            replay: Some(replay),
            cursor: Cursor::new([]),
            queue,
            registration,
        }
    }

    /// The streaming response, with the headers that keep proxies from buffering it. With
    /// `handoff`, the response also carries the stream as a
    /// [`Handoff`](handoff::Handoff), for a server loop that writes it to the socket itself.
    pub(crate) fn into_response(self, handoff: bool) -> axum::response::Response {
        let mut response = if handoff {
            handoff::offer(self)
        } else {
            Response::new(axum::body::Body::new(self))
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-transform"),
        );
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.poll_next(cx)
            .map(|next| next.map(|bytes| Ok(Frame::data(bytes))))
    }
}

impl EventBody {
    /// The next bytes to send; `None` once the registry let the stream go and its queue
    /// is drained.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        // Nothing goes out before the replay is settled, so that a client that has seen the
        // first bytes knows where its stream starts.
        if let Some(replay) = &mut self.replay {
            let replay = std::task::ready!(replay.as_mut().poll(cx));
            self.replay = None;
            self.settle(replay);
        }
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                return Poll::Ready(Some(bytes));
            }
            let Some(first) = std::task::ready!(self.queue.poll_recv(cx)) else {
                return Poll::Ready(None);
            };
            if let Some(bytes) = self.coalesce(&first) {
                return Poll::Ready(Some(bytes));
            }
        }
    }

    /// Takes the replay's frames, and ends them with an `id:` of the cursor where the
    /// stream now stands unless the last of them carried it: a client that reconnects
    /// before any event arrives then resumes from here.
    fn settle(&mut self, replay: Replay) {
        self.cursor = replay.cursor;
        let queued = self.start_live(&replay.live);
        let mut buf = BytesMut::new();
        let mut cursor_sent = false;
        for frame in &replay.frames {
            cursor_sent = self.append(frame, &mut buf) && frame.stamp.is_some();
        }
        for (target, position) in &replay.through {
            if !replay.live.contains(target) && self.cursor.advance(target, *position) {
                cursor_sent = false;
            }
        }
        if !cursor_sent {
            self.cursor.put_id_line(&mut buf);
            buf.put_u8(b'\n');
        }
        for frame in &queued {
            self.append(frame, &mut buf);
        }
        self.pending.push_back(buf.freeze());
    }

    /// Takes the frames queued while the stream's start was read. Those of a target the
    /// stream starts live in were published after the stream registered, so they are news
    /// to its client, even when the position read already counts them: the stream starts
    /// just before the first of them. Returns them, to be sent after the start.
    fn start_live(&mut self, live: &[Target]) -> Vec<Queued> {
        let queued: Vec<Queued> = std::iter::from_fn(|| self.queue.try_recv()).collect();
        for frame in &queued {
            if let Some(Stamp::Event(target, position)) = &frame.stamp
                && live.contains(target)
            {
                self.cursor.lower(target, position.before());
            }
        }
        queued
    }
}

/// Frames already waiting are joined into one write up to this size: a client that fell a
/// little behind catches up in fewer, larger writes.
const COALESCE_BYTES: usize = 16 * 1024;

impl EventBody {
    /// Appends `frame` to `buf`, after the `id:` line of the cursor it moves; false, and
    /// nothing appended, for an event the stream passed already.
    fn append(&mut self, frame: &queue::Frame, buf: &mut BytesMut) -> bool {
        match &frame.stamp {
            None => {}
            Some(Stamp::Event(target, position)) => {
                if !self.cursor.advance(target, *position) {
                    return false;
                }
                self.cursor.put_id_line(buf);
            }
            Some(Stamp::Reset(target, position)) => {
                self.cursor.reset(target, *position);
                self.cursor.put_id_line(buf);
            }
            Some(Stamp::Cursor) => self.cursor.put_id_line(buf),
        }
        buf.extend_from_slice(&frame.bytes);
        true
    }

    /// `first`, followed by whatever else is queued already, as one buffer; `None` when
    /// all of it was passed already.
    fn coalesce(&mut self, first: &queue::Frame) -> Option<Bytes> {
        let mut joined = BytesMut::with_capacity(first.bytes.len() + 128);
        self.append(first, &mut joined);
        while joined.len() < COALESCE_BYTES {
            let Some(next) = self.queue.try_recv() else {
                break;
            };
            self.append(&next, &mut joined);
        }
        (!joined.is_empty()).then(|| joined.freeze())
    }
}

impl std::fmt::Debug for EventBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBody")
            .field("connection", &self.registration.id())
            .finish()
    }
}
