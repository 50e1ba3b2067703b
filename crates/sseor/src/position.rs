//! Where a client is in the event sequence: the `id:` of every event, and the
//! `Last-Event-ID` a reconnecting browser sends back.

use std::fmt;
use std::str::FromStr;

/// A place in the sequence of events of one broker: an epoch, which changes when the
/// broker's history is lost (a restart of the embedded broker, a Redis emptied), the time
/// the event was published (Unix milliseconds), and a sequence number, which increases
/// with every event published, whatever its target.
///
/// Because the sequence is shared by all targets, one position locates a client in all of
/// them at once: it has seen every event of its user, topics and broadcasts numbered up to
/// `seq`, and none after. The time tells, without any lookup, whether the position is older
/// than the history kept. It is written `EPOCH-MS-SEQ`.
///
/// ```
/// use sseor::Position;
/// let position: Position = "k3f9-1764331200000-42".parse().unwrap();
/// assert_eq!((position.ms(), position.seq()), (1_764_331_200_000, 42));
/// assert_eq!(position.to_string(), "k3f9-1764331200000-42");
/// assert!("42".parse::<Position>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    epoch: String,
    ms: u64,
    seq: u64,
}

impl Position {
    /// The position `seq` of `epoch`, published at `ms` (Unix milliseconds).
    pub fn new(epoch: impl Into<String>, ms: u64, seq: u64) -> Self {
        Self {
            epoch: epoch.into(),
            ms,
            seq,
        }
    }

    /// When the event was published, in Unix milliseconds.
    pub fn ms(&self) -> u64 {
        self.ms
    }

    /// The epoch: positions of different epochs cannot be compared.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The sequence number within the epoch.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.epoch, self.ms, self.seq)
    }
}

/// Why a text is not a [`Position`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an event position (EPOCH-MS-SEQ)")]
pub struct InvalidPosition(String);

impl FromStr for Position {
    type Err = InvalidPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidPosition(text.chars().take(64).collect());
        let (rest, seq) = text.rsplit_once('-').ok_or_else(invalid)?;
        let (epoch, ms) = rest.rsplit_once('-').ok_or_else(invalid)?;
        let valid_epoch = !epoch.is_empty()
            && epoch.len() <= 32
            && epoch.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid_epoch {
            return Err(invalid());
        }
        let digits = |part: &str| {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
                .ok_or_else(invalid)
        };
        Ok(Self::new(epoch, digits(ms)?, digits(seq)?))
    }
}

/// The time now, in Unix milliseconds.
pub(crate) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A short random epoch, different for every start of a broker.
pub(crate) fn new_epoch() -> String {
    format!("{:08x}", crate::random::u64() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_well_formed_positions() {
        for bad in [
            "",
            "-",
            "a-1",
            "-1-1",
            "a--1",
            "a-1-",
            "ä-1-1",
            "a b-1-1",
            "a-+1-1",
            "a-1-18446744073709551616",
            "a-b-1",
            "a-1-1-1",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "ab12-5-0".parse::<Position>().unwrap(),
            Position::new("ab12", 5, 0)
        );
        assert_ne!(new_epoch(), "");
    }
}
