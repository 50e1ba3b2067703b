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

/// Heartbeats go out one slice of the connections at a time, a slice every this long, so
/// that the interval is spread evenly: a heartbeat to every connection at once is a burst
/// of writes that holds up the events behind it (100 ms and more at 10,000 streams), and
/// even a sixteenth of them at once (625 writes, some 10 ms) was the slowest 1% of
/// targeted events at 2,000 a second.
const HEARTBEAT_STEP: Duration = Duration::from_millis(50);

/// A slice's heartbeats go out in at most this many bursts, spread over the step: on one
/// CPU, a slice's 33 heartbeats at once (10,000 streams, a 15 s interval) made the slowest
/// 1% of targeted events at 2,000 a second take twice as long as with no heartbeats; in
/// bursts of 2, 2 ms apart, they do not show.
const HEARTBEAT_BURSTS: u32 = 25;

/// How many of a slice's `n` heartbeats go out at once.
fn burst_len(n: usize) -> usize {
    n.div_ceil(HEARTBEAT_BURSTS as usize).max(1)
}

/// The fewest and most slices of an interval: short intervals still go out in 16 slices,
/// and long ones do not scan the connections more often than every [`HEARTBEAT_STEP`].
const HEARTBEAT_SLICES: (u64, u64) = (16, 4096);

/// How many slices one heartbeat interval goes out in.
fn heartbeat_slices(every: Duration) -> u64 {
    let steps = every.as_millis() / HEARTBEAT_STEP.as_millis();
    u64::try_from(steps)
        .unwrap_or(u64::MAX)
        .clamp(HEARTBEAT_SLICES.0, HEARTBEAT_SLICES.1)
}

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

/// Sends every idle stream a heartbeat once per `every`, a slice of them at a time.
pub(super) async fn heartbeat(
    registry: Arc<Registry>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let slices = heartbeat_slices(every);
    // At most 4096 slices, so the division loses nothing that matters.
    let step = every / u32::try_from(slices).unwrap_or(u32::MAX);
    let pause = step / HEARTBEAT_BURSTS;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeat = Frame::plain(encode::HEARTBEAT);
    for slice in (0..slices).cycle() {
        let started = tokio::select! {
            () = shutdown.cancelled() => return,
            started = ticks.tick() => started,
        };
        let ids = registry.slice_of(&Target::All, slice, slices);
        // At most HEARTBEAT_BURSTS bursts, each at its own point of the step, so the last
        // goes out within the step however late the timer fires.
        for (burst, ids) in (0u32..).zip(ids.chunks(burst_len(ids.len()))) {
            if burst > 0 {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(started + pause * burst) => {}
                }
            }
            registry.deliver_if_idle(&Target::All, ids, &heartbeat);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_goes_out_in_slices_50_ms_apart_within_bounds() {
        assert_eq!(heartbeat_slices(Duration::from_secs(15)), 300);
        assert_eq!(heartbeat_slices(Duration::from_millis(500)), 16);
        assert_eq!(heartbeat_slices(Duration::from_millis(10)), 16);
        assert_eq!(heartbeat_slices(Duration::from_secs(3600)), 4096);
    }

    #[test]
    fn a_slice_goes_out_in_small_bursts_within_its_step() {
        assert_eq!(burst_len(0), 1);
        assert_eq!(burst_len(1), 1);
        assert_eq!(burst_len(25), 1);
        assert_eq!(burst_len(33), 2);
        for n in [1usize, 25, 26, 33, 1_000, 100_000] {
            let bursts = n.div_ceil(burst_len(n));
            assert!(bursts <= HEARTBEAT_BURSTS as usize, "{n}: {bursts} bursts");
        }
    }
}
