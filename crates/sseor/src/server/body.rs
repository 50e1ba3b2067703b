//! The body of one SSE response: the bytes queued for its stream, until the registry
//! lets it go or the client leaves. Under any server it is an `http_body::Body`; under
//! sseor's own loop it may be handed over and written to the socket directly (see
//! [`handoff`](super::handoff)).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Response, header};
use http_body::{Body, Frame};

use super::handoff;
use crate::fanout::queue::{self, Queued};
use crate::fanout::registry::Registration;

/// What a resuming stream sends before it goes live: the frames of the events the client
/// missed (or of a reset), and the last sequence number they cover, so that live events
/// queued meanwhile are not sent twice.
pub(crate) struct Replay {
    pub(crate) frames: Vec<Bytes>,
    pub(crate) through: u64,
}

/// Streams a stream's queue; unregisters the stream when dropped, which is when the client
/// goes away or the response ends.
pub(crate) struct EventBody {
    /// Frames to send before anything else: the opening `retry:`, then the replay.
    pending: VecDeque<Bytes>,
    replay: Option<BoxFuture<'static, Replay>>,
    /// Live events numbered up to this were part of the replay.
    skip_through: u64,
    queue: queue::Receiver,
    registration: Registration,
}

impl EventBody {
    pub(crate) fn new(
        opening: Bytes,
        replay: Option<BoxFuture<'static, Replay>>,
        queue: queue::Receiver,
        registration: Registration,
    ) -> Self {
        Self {
            pending: VecDeque::from([opening]),
            replay,
            skip_through: 0,
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
            self.pending.extend(replay.frames);
            self.skip_through = replay.through;
        }
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                return Poll::Ready(Some(bytes));
            }
            match std::task::ready!(self.queue.poll_recv(cx)) {
                None => return Poll::Ready(None),
                Some(queued) if self.already_sent(&queued) => {}
                Some(queued) => return Poll::Ready(Some(self.coalesce(queued.bytes))),
            }
        }
    }
}

/// Frames already waiting are joined into one write up to this size: a client that fell a
/// little behind catches up in fewer, larger writes.
const COALESCE_BYTES: usize = 16 * 1024;

impl EventBody {
    fn already_sent(&self, queued: &Queued) -> bool {
        queued.seq != 0 && queued.seq <= self.skip_through
    }

    /// `first`, followed by whatever else is queued already, as one buffer; `first` itself
    /// (shared, not copied) when nothing else waits.
    fn coalesce(&mut self, first: Bytes) -> Bytes {
        let mut joined: Option<bytes::BytesMut> = None;
        while joined.as_ref().map_or(first.len(), bytes::BytesMut::len) < COALESCE_BYTES {
            let Some(next) = self.queue.try_recv() else {
                break;
            };
            if self.already_sent(&next) {
                continue;
            }
            joined
                .get_or_insert_with(|| bytes::BytesMut::from(&first[..]))
                .extend_from_slice(&next.bytes);
        }
        joined.map_or(first, bytes::BytesMut::freeze)
    }
}

impl std::fmt::Debug for EventBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBody")
            .field("connection", &self.registration.id())
            .finish()
    }
}
