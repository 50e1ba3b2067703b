//! Whether a stream can resume each of its targets from where its client stood: the
//! checks every broker makes around its history, and the reasons of the resets it answers
//! instead.
//!
//! The reasons reach clients, in the data of the reset event, and operators, in the logs:
//! their words stay the same whichever broker says them.

use super::{History, Replayed};
use crate::{Position, Target};

/// The reason of the reset the streams of a target get when Redis lost its history while
/// the instance was subscribed or reconnecting.
#[cfg(feature = "redis")]
pub(super) const REDIS_LOST_HISTORY: &str = "the event history was lost (Redis lost its data)";

/// The reason of the reset the streams of a target get when events they missed cannot be
/// read back.
#[cfg(feature = "redis")]
pub(super) const MISSED_EVENTS_GONE: &str = "events were missed and are no longer in the history";

/// How a broker loses the history a position belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loss {
    /// The embedded broker's history lives in the process: a restart ends it.
    Restart,
    /// Redis was emptied, restarted without persistence, or the sequence expired.
    #[cfg(feature = "redis")]
    Redis,
}

/// Why a client cannot resume from its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// The broker keeps no history at all.
    NoHistory,
    /// The position belongs to an epoch whose history is gone.
    Gone(Loss),
    /// The position is ahead of the target's sequence.
    NotReached,
    /// Events after the position were dropped from the history.
    TooOld,
    /// An entry of the history cannot be read: skipping it would be a silent gap.
    #[cfg(feature = "redis")]
    Unreadable,
}

impl Reason {
    /// The words the client and the logs get.
    fn text(self) -> &'static str {
        match self {
            Self::NoHistory => "this broker keeps no history",
            Self::Gone(Loss::Restart) => {
                "the history that position belongs to is gone (the server restarted)"
            }
            #[cfg(feature = "redis")]
            Self::Gone(Loss::Redis) => {
                "the history that position belongs to is gone (Redis lost its data, or it \
                 expired)"
            }
            Self::NotReached => "that position has not been reached yet",
            Self::TooOld => "that position is older than the history kept",
            #[cfg(feature = "redis")]
            Self::Unreadable => "the history holds an entry that cannot be read",
        }
    }

    /// The reset that sends the client on from `positions`.
    pub(super) fn reset(self, positions: Vec<(Target, Position)>) -> History {
        History::Reset {
            reason: self.text().to_owned(),
            positions,
        }
    }
}

/// The reset for a history that cannot be read now: `error` says why.
#[cfg(feature = "redis")]
pub(super) fn unreadable_now(error: &crate::Error, targets: &[Target]) -> History {
    History::Reset {
        reason: format!("the history cannot be read now ({error})"),
        positions: targets
            .iter()
            .map(|target| (target.clone(), Position::default()))
            .collect(),
    }
}

/// What a stream that stood at `after` in a target needs from its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// Nothing: it saw every event, or starts live.
    Nothing,
    /// The events from this number on.
    From(u64),
    /// A reset: what it missed cannot be told.
    Reset(Reason),
}

/// What a stream needs that stood at `after` (`None`: it starts live) in a target standing
/// at `now` (epoch 0 when the target has no sequence), in a broker that loses its
/// histories as `loss` says.
pub(super) fn need(after: Option<Position>, now: Position, loss: Loss) -> Need {
    let Some(after) = after else {
        return Need::Nothing;
    };
    if after.epoch() == 0 {
        // The target had no sequence when the client looked: every event since is new.
        return if now.seq() == 0 {
            Need::Nothing
        } else {
            Need::From(1)
        };
    }
    if now.epoch() != after.epoch() {
        return Need::Reset(Reason::Gone(loss));
    }
    match after.seq().cmp(&now.seq()) {
        std::cmp::Ordering::Greater => Need::Reset(Reason::NotReached),
        std::cmp::Ordering::Equal => Need::Nothing,
        std::cmp::Ordering::Less => Need::From(after.seq() + 1),
    }
}

/// Whether a history read from `from` holds every event needed: its first entry kept
/// (`None`: none) must be `from` itself, unless nothing was published from there on.
///
/// # Errors
/// [`Reason::TooOld`] when events were trimmed.
pub(super) fn complete(first_kept: Option<u64>, from: u64, now: u64) -> Result<(), Reason> {
    match first_kept {
        Some(first) if first > from => Err(Reason::TooOld),
        None if now >= from => Err(Reason::TooOld),
        _ => Ok(()),
    }
}

/// The events of every target in the order they were published, each target's own in
/// their order: `per_target` holds each target's events in order, each with when it was
/// published (`ms`), and they are merged by that time. Clocks of different publishers
/// may disagree, so a time never reorders the events of one target.
pub(super) fn in_order(per_target: Vec<Vec<(u64, Replayed)>>) -> Vec<Replayed> {
    let total = per_target.iter().map(Vec::len).sum();
    let mut lists: Vec<std::iter::Peekable<std::vec::IntoIter<(u64, Replayed)>>> = per_target
        .into_iter()
        .map(|list| list.into_iter().peekable())
        .collect();
    let mut merged = Vec::with_capacity(total);
    loop {
        let next = lists
            .iter_mut()
            .enumerate()
            .filter_map(|(i, list)| list.peek().map(|(ms, _)| (*ms, i)))
            .min();
        let Some((_, i)) = next else {
            return merged;
        };
        if let Some((_, replayed)) = lists[i].next() {
            merged.push(replayed);
        }
    }
}

/// What a broker that keeps no history answers: the stream starts live in every target,
/// or gets a reset when it asked to resume one.
pub(super) fn without_history(from: Vec<(Target, Option<Position>)>) -> History {
    let resumes = from.iter().any(|(_, after)| after.is_some());
    let positions = from
        .into_iter()
        .map(|(target, _)| (target, Position::default()))
        .collect();
    if resumes {
        Reason::NoHistory.reset(positions)
    } else {
        History::Events {
            events: Vec::new(),
            positions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOSS: Loss = Loss::Restart;

    #[test]
    fn positions_are_checked_against_the_epoch_and_the_sequence() {
        let now = Position::new(7, 10);
        assert_eq!(need(None, now, LOSS), Need::Nothing);
        assert_eq!(
            need(Some(Position::new(8, 3)), now, LOSS),
            Need::Reset(Reason::Gone(LOSS))
        );
        assert_eq!(
            need(Some(Position::new(7, 11)), now, LOSS),
            Need::Reset(Reason::NotReached)
        );
        assert_eq!(need(Some(Position::new(7, 10)), now, LOSS), Need::Nothing);
        assert_eq!(need(Some(Position::new(7, 4)), now, LOSS), Need::From(5));
        assert_eq!(need(Some(Position::default()), now, LOSS), Need::From(1));
        assert_eq!(
            need(Some(Position::default()), Position::default(), LOSS),
            Need::Nothing
        );
        assert_eq!(
            need(Some(now), Position::default(), LOSS),
            Need::Reset(Reason::Gone(LOSS))
        );
    }

    #[test]
    fn a_history_read_is_complete_only_from_the_first_event_needed() {
        assert_eq!(complete(Some(5), 5, 9), Ok(()));
        assert_eq!(complete(Some(6), 5, 9), Err(Reason::TooOld));
        assert_eq!(complete(None, 5, 9), Err(Reason::TooOld));
        assert_eq!(complete(None, 10, 9), Ok(()));
    }

    #[test]
    fn a_replay_merges_targets_by_time_and_keeps_each_targets_order() {
        let event = |target: &Target, seq| {
            (
                target.clone(),
                Position::new(1, seq),
                crate::Event::new("t"),
            )
        };
        let (user, all) = (Target::user("u").unwrap(), Target::All);
        // The user's second event carries an earlier time than its first (another
        // publisher's clock): it still comes second.
        let replay = in_order(vec![
            vec![
                (10, event(&user, 1)),
                (9, event(&user, 2)),
                (40, event(&user, 3)),
            ],
            vec![(5, event(&all, 1)), (20, event(&all, 2))],
        ]);
        let order: Vec<(bool, u64)> = replay
            .iter()
            .map(|(target, p, _)| (*target == user, p.seq()))
            .collect();
        assert_eq!(
            order,
            [(false, 1), (true, 1), (true, 2), (false, 2), (true, 3)]
        );
    }
}
