//! Whether a client can resume from its position: the checks every broker makes before it
//! reads its history, and the reasons of the resets it answers instead.
//!
//! The reasons reach clients, in the data of the reset event, and operators, in the logs:
//! their words stay the same whichever broker says them.

use std::time::Duration;

use super::History;
use crate::position::unix_millis;
use crate::{Event, Position};

/// The reason of the reset every stream of an instance gets when Redis lost the history
/// while the instance was subscribed or reconnecting.
#[cfg(feature = "redis")]
pub(super) const REDIS_LOST_HISTORY: &str = "the event history was lost (Redis lost its data)";

/// How a broker loses the history a position belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loss {
    /// The embedded broker's history lives in the process: a restart ends it.
    Restart,
    /// Redis was emptied, restarted without persistence, or evicted the epoch.
    #[cfg(feature = "redis")]
    Redis,
}

/// Why a client cannot resume from its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// The broker keeps no history at all.
    NoHistory,
    /// The last event id is not a position.
    NotAPosition,
    /// The position belongs to an epoch whose history is gone.
    Gone(Loss),
    /// The position is ahead of the broker's sequence.
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
            Self::NotAPosition => "the last event id is not a position of this server",
            Self::Gone(Loss::Restart) => {
                "the history that position belongs to is gone (the server restarted)"
            }
            #[cfg(feature = "redis")]
            Self::Gone(Loss::Redis) => {
                "the history that position belongs to is gone (Redis lost its data)"
            }
            Self::NotReached => "that position has not been reached yet",
            Self::TooOld => "that position is older than the history kept",
            #[cfg(feature = "redis")]
            Self::Unreadable => "the history holds an entry that cannot be read",
        }
    }

    /// The reset that sends the client on from `current`.
    pub(super) fn reset(self, current: Option<Position>) -> History {
        History::Reset {
            reason: self.text().to_owned(),
            current,
        }
    }
}

/// The reset for a history that cannot be read now: `error` says why.
#[cfg(feature = "redis")]
pub(super) fn unreadable_now(error: &crate::Error) -> History {
    History::Reset {
        reason: format!("the history cannot be read now ({error})"),
        current: None,
    }
}

/// A broker's sequence as a resume is checked against it.
#[derive(Debug)]
pub(super) struct Resume {
    /// The broker's latest position, where a reset sends the client; `None` when the
    /// broker has none (before its first event, or once Redis lost its data).
    pub(super) current: Option<Position>,
    /// How this broker loses its history, for the reason of a position of another epoch.
    pub(super) loss: Loss,
}

impl Resume {
    /// `after`, when the history kept for `max_age` may hold every event since; otherwise
    /// why not: no position, of another epoch, ahead of the sequence, or too old. The
    /// history read next may still find events after it trimmed ([`Reason::TooOld`]).
    ///
    /// # Errors
    /// The reason the client cannot resume from `after`.
    pub(super) fn check<'a>(
        &self,
        after: Option<&'a Position>,
        max_age: Duration,
    ) -> Result<&'a Position, Reason> {
        let after = after.ok_or(Reason::NotAPosition)?;
        let current = self
            .current
            .as_ref()
            .filter(|current| current.epoch() == after.epoch())
            .ok_or(Reason::Gone(self.loss))?;
        if after.seq() > current.seq() {
            return Err(Reason::NotReached);
        }
        if u128::from(unix_millis().saturating_sub(after.ms())) > max_age.as_millis() {
            return Err(Reason::TooOld);
        }
        Ok(after)
    }

    /// The reset that sends the client on from the current position.
    pub(super) fn reset(&self, reason: Reason) -> History {
        reason.reset(self.current.clone())
    }

    /// The events missed, in order, up to the current position: histories are read one
    /// after another while events keep coming, and the later ones come live.
    pub(super) fn replay(&self, mut missed: Vec<(u64, Event)>) -> History {
        let through = self.current.as_ref().map_or(0, Position::seq);
        missed.sort_by_key(|(seq, _)| *seq);
        missed.retain(|(seq, _)| *seq <= through);
        History::Events {
            events: missed,
            through,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resume(current: Option<Position>) -> Resume {
        Resume {
            current,
            loss: Loss::Restart,
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn positions_are_checked_against_the_epoch_and_the_sequence() {
        let now = unix_millis();
        let at = |seq| Position::new("ab12", now, seq);
        let resume = resume(Some(at(7)));
        assert_eq!(resume.check(None, DAY), Err(Reason::NotAPosition));
        assert_eq!(
            resume.check(Some(&Position::new("cd34", now, 1)), DAY),
            Err(Reason::Gone(Loss::Restart))
        );
        assert_eq!(resume.check(Some(&at(8)), DAY), Err(Reason::NotReached));
        assert_eq!(resume.check(Some(&at(7)), DAY), Ok(&at(7)));
        let old = Position::new("ab12", now - 2 * 86_400_000, 3);
        assert_eq!(resume.check(Some(&old), DAY), Err(Reason::TooOld));
    }

    #[test]
    fn without_a_current_position_every_position_is_gone() {
        let position = Position::new("ab12", unix_millis(), 1);
        assert_eq!(
            resume(None).check(Some(&position), DAY),
            Err(Reason::Gone(Loss::Restart))
        );
    }

    #[test]
    fn a_replay_is_ordered_and_stops_at_the_current_position() {
        let event = || Event::new("t");
        let resume = resume(Some(Position::new("ab12", 5, 3)));
        let History::Events { events, through } =
            resume.replay(vec![(3, event()), (4, event()), (2, event())])
        else {
            panic!("a replay is events");
        };
        assert_eq!(through, 3);
        assert_eq!(
            events.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            [2, 3]
        );
    }
}
