//! The hand-over between the server loop and a stream.
//!
//! The contract: the server loop puts [`AcceptsHandoff`] in the extensions of a request
//! whose connection it can take over (the first request of an HTTP/1.x connection, a
//! `GET` it read itself), and [`ConnectionAbort`] in every request's. A handler that opens
//! an event stream on a request marked [`AcceptsHandoff`] answers with a response that
//! carries the stream as a [`Handoff`] in its extensions; the loop takes it out, writes
//! the response head and then the stream straight to the socket, and drops the HTTP
//! connection's state. Whoever takes the stream first writes it: when the loop does not
//! (a middleware replaced the response, say), the response body streams it as usual.
//! [`ConnectionAbort`] is how the fan-out cuts off a stream whose client stopped reading:
//! cancelling it closes an HTTP/1 connection or resets one HTTP/2 stream, so that the
//! stream cannot end as if it had finished cleanly.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame};
use tokio_util::sync::CancellationToken;

use super::body::EventBody;

/// Ends at once the stream a request opens: on HTTP/1 by closing the connection, on
/// HTTP/2 by resetting that stream alone. Put in every request's extensions, so that a
/// stream whose client stopped reading can be cut off.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionAbort(pub(crate) CancellationToken);

/// Marks a request whose connection's server loop can write an HTTP/1.1 event stream to
/// the socket itself, so that the stream is handed over as a [`Handoff`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct AcceptsHandoff;

/// An event stream a response hands to the server loop (in its extensions), which then
/// writes it without keeping an HTTP connection's buffers and state for it. Whoever takes
/// it first streams it: the loop, or else the response body.
#[derive(Clone)]
pub(crate) struct Handoff(Arc<Mutex<Option<EventBody>>>);

impl Handoff {
    pub(crate) fn take(&self) -> Option<EventBody> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The body of a response whose stream may be handed off: empty once it was.
struct SharedBody(Arc<Mutex<Option<EventBody>>>);

impl Body for SharedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let mut body = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }
}

/// The response of a stream offered for hand-over: its body streams it unless the server
/// loop takes the [`Handoff`] from its extensions first.
pub(crate) fn offer(stream: EventBody) -> axum::response::Response {
    let shared = Arc::new(Mutex::new(Some(stream)));
    let mut response = Response::new(axum::body::Body::new(SharedBody(shared.clone())));
    response.extensions_mut().insert(Handoff(shared));
    response
}
