//! How busy a connection is: its requests in flight, and since when there were none, so
//! that a connection with nothing to do for the header timeout is closed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::watch;

/// How busy a connection is.
#[derive(Clone, Copy, Debug)]
struct Load {
    in_flight: usize,
    /// When the last request ended (or the connection started).
    idle_since: tokio::time::Instant,
}

/// Counts a connection's requests in flight, from the moment hyper hands one over until
/// its response body is dropped (sent, or abandoned).
#[derive(Clone)]
pub(super) struct Activity(Arc<watch::Sender<Load>>);

/// One request in flight; it ends when this is dropped.
pub(super) struct InFlight(Arc<watch::Sender<Load>>);

/// Waits for a connection to be idle too long.
pub(super) struct Idle(watch::Receiver<Load>);

impl Activity {
    pub(super) fn new() -> (Self, Idle) {
        let (sender, receiver) = watch::channel(Load {
            in_flight: 0,
            idle_since: tokio::time::Instant::now(),
        });
        (Self(Arc::new(sender)), Idle(receiver))
    }

    pub(super) fn start(&self) -> InFlight {
        self.0.send_modify(|load| load.in_flight += 1);
        InFlight(self.0.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|load| {
            load.in_flight -= 1;
            if load.in_flight == 0 {
                load.idle_since = tokio::time::Instant::now();
            }
        });
    }
}

impl Idle {
    /// Completes once the connection has had no request in flight for `timeout`, counted
    /// from `not_before` at the earliest.
    pub(super) async fn expired(
        &mut self,
        timeout: Duration,
        not_before: Option<tokio::time::Instant>,
    ) {
        loop {
            let load = *self.0.borrow_and_update();
            if load.in_flight == 0 {
                let since = not_before.map_or(load.idle_since, |at| at.max(load.idle_since));
                tokio::select! {
                    () = tokio::time::sleep_until(since + timeout) => return,
                    changed = self.0.changed() => if changed.is_err() { return },
                }
            } else if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
pub(super) struct InFlightBody {
    pub(super) body: Body,
    pub(super) _in_flight: InFlight,
}

impl http_body::Body for InFlightBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
