//! What runs beside the streams: heartbeats, and the end of streams whose credential
//! expires.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fanout::queue::Frame;
use crate::fanout::registry::Registry;
use crate::{Target, encode};

/// Heartbeats go out in this many slices, one slice of the connections at a time, spread
/// over the interval: a heartbeat to every connection at once is a burst of writes that
/// holds up the events behind it (100 ms and more at 10,000 streams).
const HEARTBEAT_SLICES: u64 = 16;

/// Ends each stream whose credential expires at its deadline, so that its client
/// reconnects with a fresh one. A stream that ended before keeps its entry until then:
/// removing a stream's connection twice is harmless.
pub(super) async fn expire_streams(
    registry: Arc<Registry>,
    mut deadlines: mpsc::UnboundedReceiver<(Instant, u64)>,
    shutdown: CancellationToken,
) {
    let mut due = tokio_util::time::DelayQueue::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            next = deadlines.recv() => match next {
                Some((deadline, id)) => {
                    due.insert_at(id, deadline);
                }
                None => return,
            },
            Some(expired) = std::future::poll_fn(|cx| due.poll_expired(cx)), if !due.is_empty() => {
                registry.expire(expired.into_inner());
            }
        }
    }
}

pub(super) async fn heartbeat(
    registry: Arc<Registry>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let step = every / HEARTBEAT_SLICES as u32;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeat = Frame::plain(encode::HEARTBEAT);
    for slice in (0..HEARTBEAT_SLICES).cycle() {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {
                registry.deliver_to_slice(&Target::All, &heartbeat, slice, HEARTBEAT_SLICES);
            }
        }
    }
}
