//! What the subscriber knows of each target it follows, and what an event that arrives,
//! or a position read after the subscription came back, means for the target's streams.

use crate::Position;

/// The last event of a target delivered here (or the target's position when it was first
/// followed), and when it was published (0: unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Seen {
    pub(super) position: Position,
    pub(super) ms: u64,
}

/// What to do for the streams of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing was missed: deliver (an event the streams passed already, they drop).
    Deliver,
    /// Events were missed: read them from this number on, and deliver them first.
    Repair(u64),
    /// The target's history is in a new epoch: the one its streams stood in is gone.
    NewEpoch,
    /// The number went back in the same epoch: the events after it were lost (a master
    /// that died before its replica had them, a Redis restarted from an older snapshot).
    Rewound,
}

/// What an event at `at` means after `seen`.
pub(super) fn on_event(seen: Seen, at: Position) -> Step {
    if seen.position.epoch() == 0 {
        return if at.seq() <= 1 {
            Step::Deliver
        } else {
            Step::Repair(1)
        };
    }
    if at.epoch() != seen.position.epoch() {
        return Step::NewEpoch;
    }
    if at.seq() > seen.position.seq() + 1 {
        Step::Repair(seen.position.seq() + 1)
    } else {
        Step::Deliver
    }
}

/// What a target standing at `now` means after `seen`, once the subscription is back;
/// `None` when nothing happened meanwhile.
pub(super) fn on_return(seen: Seen, now: Position) -> Option<Step> {
    if seen.position.epoch() == 0 {
        return (now.seq() > 0).then_some(Step::Repair(1));
    }
    if now.epoch() != seen.position.epoch() {
        return Some(Step::NewEpoch);
    }
    match now.seq().cmp(&seen.position.seq()) {
        std::cmp::Ordering::Less => Some(Step::Rewound),
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Greater => Some(Step::Repair(seen.position.seq() + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(epoch: u32, seq: u64) -> Seen {
        Seen {
            position: Position::new(epoch, seq),
            ms: 0,
        }
    }

    #[test]
    fn an_event_that_skips_ahead_is_a_gap() {
        assert_eq!(on_event(seen(7, 4), Position::new(7, 5)), Step::Deliver);
        assert_eq!(on_event(seen(7, 4), Position::new(7, 3)), Step::Deliver);
        assert_eq!(on_event(seen(7, 4), Position::new(7, 8)), Step::Repair(5));
        assert_eq!(on_event(seen(7, 4), Position::new(9, 1)), Step::NewEpoch);
        assert_eq!(on_event(seen(0, 0), Position::new(9, 1)), Step::Deliver);
        assert_eq!(on_event(seen(0, 0), Position::new(9, 3)), Step::Repair(1));
    }

    #[test]
    fn a_return_finds_what_happened_meanwhile() {
        assert_eq!(on_return(seen(7, 4), Position::new(7, 4)), None);
        assert_eq!(
            on_return(seen(7, 4), Position::new(7, 9)),
            Some(Step::Repair(5))
        );
        assert_eq!(
            on_return(seen(7, 4), Position::new(7, 2)),
            Some(Step::Rewound)
        );
        assert_eq!(
            on_return(seen(7, 4), Position::default()),
            Some(Step::NewEpoch)
        );
        assert_eq!(on_return(seen(0, 0), Position::default()), None);
        assert_eq!(
            on_return(seen(0, 0), Position::new(3, 2)),
            Some(Step::Repair(1))
        );
    }
}
