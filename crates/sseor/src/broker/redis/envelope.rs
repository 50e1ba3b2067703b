//! What arrives on the subscribed channels: the envelope sseor's publish script writes,
//! and messages of other Redis clients, which are dropped when too large.

use std::time::{Duration, Instant};

use crate::Position;

/// The position a message starts with when sseor's publish script wrote it:
/// `{"id":"EPOCH-MS-SEQ",...`; read from its first bytes, without parsing the rest.
pub(super) fn envelope_position(payload: &[u8]) -> Option<Position> {
    let rest = payload.strip_prefix(br#"{"id":""#)?;
    // An epoch of 32 characters and two numbers of 20 digits, with their dashes.
    let end = rest.iter().take(80).position(|&b| b == b'"')?;
    if rest.get(end + 1) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
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
    fn only_the_publish_scripts_envelope_gives_a_position() {
        let position = |payload: &str| envelope_position(payload.as_bytes());
        assert_eq!(
            position(r#"{"id":"ab12-5-7","type":"t","data":{}}"#),
            Some(Position::new("ab12", 5, 7))
        );
        for other in [
            r#"{"type":"t","id":"ab12-5-7"}"#,
            r#"{"id":"ab12-5-7"}"#,
            r#"{"id": "ab12-5-7","type":"t"}"#,
            r#"{"id":"ext-1","type":"t"}"#,
            "not json",
        ] {
            assert_eq!(position(other), None, "{other}");
        }
    }
}
