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

/// Keeps every stream from staying silent longer than `every`: a stream that queued
/// nothing for about that long gets a heartbeat. Each stream is visited once per interval,
/// a slice of them every step; one that carried frames since it was last visited is looked
/// at again when its newest frame is `every - step` old, and gets a heartbeat then unless
/// another frame came. An idle stream gets one heartbeat per interval, and a busy one none.
pub(super) async fn heartbeat(
    registry: Arc<Registry>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let slices = heartbeat_slices(every);
    // At most 4096 slices, so the division loses nothing that matters.
    let step = every / u32::try_from(slices).unwrap_or(u32::MAX);
    let pause = step / HEARTBEAT_BURSTS;
    let mut later = Later::new(every, step, slices);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeat = Frame::plain(encode::HEARTBEAT);
    for tick in 0u64.. {
        let started = tokio::select! {
            () = shutdown.cancelled() => return,
            started = ticks.tick() => started,
        };
        // Who is due: each stream of the slice, silent for `every - step`, and those
        // looked at again, silent since the frame they were put off for.
        let now = registry.clock_ms();
        let visits = registry.slice_of(&Target::All, tick % slices, slices);
        let quiet_since = now.wrapping_sub(later.quiet_ms);
        let mut checks: Vec<(u64, u32)> = visits.iter().map(|&id| (id, quiet_since)).collect();
        checks.extend(later.due(tick));
        let mut active = Vec::new();
        let silent = registry.silent(&Target::All, &checks, &mut active);
        for (at, last) in active {
            // A stream visited that carried frames since is looked at again before it has
            // been silent for `every`; one looked at again that did is visited next
            // interval, still in time.
            if at < visits.len() {
                later.add(tick, now, checks[at].0, last);
            }
        }
        let due: Vec<(u64, u32)> = silent.into_iter().map(|at| checks[at]).collect();
        // At most HEARTBEAT_BURSTS bursts, each at its own point of the step, so the last
        // goes out within the step however late the timer fires. Each stream is asked
        // again as its burst goes: one that carried a frame meanwhile gets no heartbeat.
        for (burst, due) in (0u32..).zip(due.chunks(burst_len(due.len()))) {
            if burst > 0 {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(started + pause * burst) => {}
                }
            }
            registry.heartbeat(&Target::All, due, &heartbeat);
        }
    }
}

/// The streams to look at again, by the tick they are due: a ring of one interval.
struct Later {
    due: Vec<Vec<(u64, u32)>>,
    /// How long a stream stays silent before its heartbeat: `every - step`.
    quiet_ms: u32,
    step_ms: u32,
}

impl Later {
    fn new(every: Duration, step: Duration, slices: u64) -> Self {
        let millis = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        Self {
            due: (0..slices).map(|_| Vec::new()).collect(),
            quiet_ms: millis(every.saturating_sub(step)),
            step_ms: millis(step).max(1),
        }
    }

    /// Looks at `id` again (seen at tick `tick`, `now`) on the first tick at which its
    /// frame of `last` has been `quiet_ms` old.
    fn add(&mut self, tick: u64, now: u32, id: u64, last: u32) {
        let waited = now.wrapping_sub(last).min(self.quiet_ms);
        let ticks = (self.quiet_ms - waited).div_ceil(self.step_ms);
        let ticks = u64::from(ticks).clamp(1, self.due.len() as u64 - 1);
        let at = (tick + ticks) % self.due.len() as u64;
        self.due[at as usize].push((id, last));
    }

    /// The streams due at `tick`.
    fn due(&mut self, tick: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
        let at = (tick % self.due.len() as u64) as usize;
        self.due[at].drain(..)
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
    fn a_busy_stream_is_looked_at_again_once_its_last_frame_is_nearly_an_interval_old() {
        // 15 s in 300 steps of 50 ms: a heartbeat after 14.95 s of silence.
        let mut later = Later::new(Duration::from_secs(15), Duration::from_millis(50), 300);
        assert_eq!(later.quiet_ms, 14_950);
        // Seen at tick 10 (at 1,000 ms), its last frame at 900 ms: due at 15,850 ms, the
        // first tick at or after it is 297 ticks on, wrapping round the ring of 300.
        later.add(10, 1_000, 7, 900);
        assert_eq!(later.due(307).collect::<Vec<_>>(), [(7, 900)]);
        assert_eq!(later.due(307).count(), 0, "taken once");
        // Due between two ticks (at 15,925 ms): the tick after, not the one before.
        later.add(10, 1_000, 11, 975);
        assert_eq!(later.due(308).count(), 0);
        assert_eq!(later.due(309).collect::<Vec<_>>(), [(11, 975)]);
        // A frame queued just now: the latest the ring allows, one tick short of a lap.
        later.add(10, 1_000, 8, 1_000);
        assert_eq!(later.due(309).collect::<Vec<_>>(), [(8, 1_000)]);
        // Already silent long enough (a late tick): on the next tick.
        later.add(10, 20_000, 9, 1_000);
        assert_eq!(later.due(11).collect::<Vec<_>>(), [(9, 1_000)]);
        // Across the wrap of the clock.
        later.add(10, 40, 10, u32::MAX - 9);
        assert_eq!(later.due(308).collect::<Vec<_>>(), [(10, u32::MAX - 9)]);
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
