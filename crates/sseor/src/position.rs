//! Where a client is in the event sequence: the `id:` of every event, and the
//! `Last-Event-ID` a reconnecting browser sends back.

use std::fmt;
use std::str::FromStr;

/// A place in the sequence of events of one broker: an epoch, which changes when the
/// broker's history is lost (a restart of the embedded broker), and a sequence number,
/// which increases with every event published, whatever its target.
///
/// Because the sequence is shared by all targets, one position locates a client in all of
/// them at once: it has seen every event of its user, topics and broadcasts numbered up to
/// `seq`, and none after. It is written `EPOCH-SEQ`.
///
/// ```
/// use sseor::Position;
/// let position: Position = "k3f9-42".parse().unwrap();
/// assert_eq!(position.seq(), 42);
/// assert_eq!(position.to_string(), "k3f9-42");
/// assert!("42".parse::<Position>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    epoch: String,
    seq: u64,
}

impl Position {
    /// The position `seq` of `epoch`.
    pub fn new(epoch: impl Into<String>, seq: u64) -> Self {
        Self {
            epoch: epoch.into(),
            seq,
        }
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
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

/// Why a text is not a [`Position`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an event position (EPOCH-SEQ)")]
pub struct InvalidPosition(String);

impl FromStr for Position {
    type Err = InvalidPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidPosition(text.chars().take(64).collect());
        let (epoch, seq) = text.rsplit_once('-').ok_or_else(invalid)?;
        let valid_epoch = !epoch.is_empty()
            && epoch.len() <= 32
            && epoch.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid_epoch {
            return Err(invalid());
        }
        let seq = seq.parse().map_err(|_| invalid())?;
        Ok(Self::new(epoch, seq))
    }
}

/// A short random epoch, different for every start of a broker.
pub(crate) fn new_epoch() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:08x}", hasher.finish() as u32)
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
            "a-b",
            "a-1-",
            "ä-1",
            "a b-1",
            "a-18446744073709551616",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
        assert!("a-b-1".parse::<Position>().is_err());
        assert_eq!(
            "ab12-0".parse::<Position>().unwrap(),
            Position::new("ab12", 0)
        );
        assert_ne!(new_epoch(), "");
    }
}
