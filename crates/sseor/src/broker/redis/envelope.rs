//! What arrives on the subscribed channels: the envelope the publish function writes, and
//! messages of other Redis clients, which are dropped when too large.

use std::time::{Duration, Instant};

use crate::Position;

/// A message the publish function wrote: `{"p":[EPOCH,SEQ,MS],` followed by the rest of
/// the event's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Envelope {
    pub(super) position: Position,
    /// When it was published, Unix ms.
    pub(super) ms: u64,
    /// The event's JSON, without the envelope.
    pub(super) json: String,
}

/// The envelope of `payload`, read from its first bytes; `None` for a message of another
/// Redis client.
pub(super) fn envelope(payload: &[u8]) -> Option<Envelope> {
    let rest = payload.strip_prefix(br#"{"p":["#)?;
    // Three numbers of at most 20 digits, with their commas.
    let end = rest.iter().take(64).position(|&b| b == b']')?;
    if rest.get(end + 1) != Some(&b',') {
        return None;
    }
    let numbers = std::str::from_utf8(&rest[..end]).ok()?;
    let mut numbers = numbers.split(',').map(|n| {
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| n.parse::<u64>().ok())
            .flatten()
    });
    let (epoch, seq, ms) = (numbers.next()??, numbers.next()??, numbers.next()??);
    if numbers.next().is_some() {
        return None;
    }
    let epoch = u32::try_from(epoch).ok().filter(|&epoch| epoch > 0)?;
    let mut json = String::with_capacity(payload.len() - end);
    json.push('{');
    json.push_str(std::str::from_utf8(&rest[end + 2..]).ok()?);
    Some(Envelope {
        position: Position::new(epoch, seq),
        ms,
        json,
    })
}

/// Warns of foreign messages dropped for their size, at most once every 10 s.
#[derive(Debug, Default)]
pub(super) struct DroppedLog {
    last_warned: Option<Instant>,
    since_warned: u64,
}

impl DroppedLog {
    /// Counts a message of `bytes` dropped from `channel`, and warns unless it did lately.
    pub(super) fn note(&mut self, channel: &str, bytes: usize) {
        self.since_warned += 1;
        if self
            .last_warned
            .is_some_and(|at| at.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        tracing::warn!(
            channel,
            bytes,
            dropped = self.since_warned,
            "messages from other Redis clients over the size limit dropped"
        );
        self.last_warned = Some(Instant::now());
        self.since_warned = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_publish_functions_envelope_gives_a_position() {
        assert_eq!(
            envelope(br#"{"p":[171,7,1764331200000],"type":"t","data":{}}"#),
            Some(Envelope {
                position: Position::new(171, 7),
                ms: 1_764_331_200_000,
                json: r#"{"type":"t","data":{}}"#.into(),
            })
        );
        for other in [
            r#"{"type":"t","p":[1,2,3]}"#,
            r#"{"p":[1,2,3]}"#,
            r#"{"p":[1,2],"type":"t"}"#,
            r#"{"p":[0,2,3],"type":"t"}"#,
            r#"{"p":[1,2,3,4],"type":"t"}"#,
            r#"{"p":[4294967296,2,3],"type":"t"}"#,
            r#"{"p":[1,-2,3],"type":"t"}"#,
            "not json",
        ] {
            assert_eq!(envelope(other.as_bytes()), None, "{other}");
        }
    }
}
