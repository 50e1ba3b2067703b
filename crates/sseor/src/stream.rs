//! The body of one SSE response: the bytes queued for its connection, until the registry
//! lets it go or the client leaves.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body::{Body, Frame};
use tokio::sync::mpsc;

use crate::registry::Registry;

/// Streams a connection's queue; unregisters the connection when dropped, which is when
/// the client goes away or the response ends.
pub(crate) struct EventBody {
    queue: mpsc::Receiver<Bytes>,
    registration: Registration,
}

struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.unregister(self.id);
    }
}

impl EventBody {
    pub(crate) fn new(queue: mpsc::Receiver<Bytes>, registry: Arc<Registry>, id: u64) -> Self {
        Self {
            queue,
            registration: Registration { registry, id },
        }
    }

    /// The streaming response, with the headers that keep proxies from buffering it.
    pub(crate) fn into_response(self) -> axum::response::Response {
        let mut response = Response::new(axum::body::Body::new(self));
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
        self.queue
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }
}

impl std::fmt::Debug for EventBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBody")
            .field("connection", &self.registration.id)
            .finish()
    }
}
