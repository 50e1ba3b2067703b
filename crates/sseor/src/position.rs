//! Where one target's sequence of events stands: the epoch of its history and the number of
//! its latest event.

use std::fmt;
use std::str::FromStr;

/// A place in the sequence of one target (a user, a topic, or the broadcasts): the epoch
/// of its history, which changes when that history is lost (a restart of the embedded
/// broker, a Redis emptied), and the number of an event within it, which grows by one with
/// every event published to the target.
///
/// Each target numbers its own events, so publishing to one touches nothing shared by
/// others. A stream, which listens to several targets, tells its client where it stands
/// in all of them at once with a [`Cursor`](crate::Cursor). The epoch 0 stands for a
/// target that had no history when the position was taken. Written `EPOCH-SEQ`, the epoch
/// in hexadecimal.
///
/// ```
/// use sseor::Position;
/// let position: Position = "8f3a2b1c-42".parse().unwrap();
/// assert_eq!((position.epoch(), position.seq()), (0x8f3a_2b1c, 42));
/// assert_eq!(position.to_string(), "8f3a2b1c-42");
/// assert!("42".parse::<Position>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Position {
    epoch: u32,
    seq: u64,
}

impl Position {
    /// The position of event `seq` in the history `epoch`.
    pub const fn new(epoch: u32, seq: u64) -> Self {
        Self { epoch, seq }
    }

    /// The epoch: positions of different epochs cannot be compared. 0 when the target had
    /// no history.
    pub const fn epoch(self) -> u32 {
        self.epoch
    }

    /// The number of the event within the epoch; 0 before the first.
    pub const fn seq(self) -> u64 {
        self.seq
    }

    /// The position just before `self` in the same epoch.
    pub(crate) const fn before(self) -> Self {
        Self::new(self.epoch, self.seq.saturating_sub(1))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{}", self.epoch, self.seq)
    }
}

/// Why a text is not a [`Position`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an event position (EPOCH-SEQ, the epoch in hexadecimal)")]
pub struct InvalidPosition(String);

impl FromStr for Position {
    type Err = InvalidPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidPosition(text.chars().take(64).collect());
        let (epoch, seq) = text.split_once('-').ok_or_else(invalid)?;
        let hex =
            !epoch.is_empty() && epoch.len() <= 8 && epoch.bytes().all(|b| b.is_ascii_hexdigit());
        let digits = !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit());
        if !hex || !digits {
            return Err(invalid());
        }
        let epoch = u32::from_str_radix(epoch, 16).map_err(|_| invalid())?;
        let seq = seq.parse().map_err(|_| invalid())?;
        Ok(Self::new(epoch, seq))
    }
}

/// The time now, in Unix milliseconds.
#[cfg(feature = "redis")]
pub(crate) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A random epoch for a new history: never 0, which stands for none.
pub(crate) fn new_epoch() -> u32 {
    (crate::random::u64() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_well_formed_positions() {
        for bad in [
            "",
            "-",
            "a-",
            "-1",
            "g-1",
            "123456789-1",
            "a-+1",
            "a-1-1",
            "a-18446744073709551616",
            "k3f9-1764331200000-42",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "ab12-5".parse::<Position>().unwrap(),
            Position::new(0xab12, 5)
        );
        assert_ne!(new_epoch(), 0);
    }
}
