//! The probes an instance publishes to itself through Redis: one channel on a single
//! Redis, one per master on a cluster (a channel whose hash tag falls in the master's
//! slots), so that readiness says every shard carries messages to this instance.

use super::RedisPublisher;
use super::commands::describe;

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// The slot of a hash tag, as Redis Cluster computes it.
fn slot(tag: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % SLOTS
}

/// The slot of a key (or channel), as Redis Cluster computes it: from its hash tag, the
/// text between its first `{` and the `}` after it, when not empty.
pub(super) fn slot_of_key(key: &str) -> u16 {
    let tag = key
        .find('{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}').map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty());
    slot(tag.unwrap_or(key))
}

/// A hash tag whose slot is in `first..=last`.
fn tag_in(first: u16, last: u16) -> String {
    (0u32..)
        .map(|n| format!("probe-{n}"))
        .find(|tag| (first..=last).contains(&slot(tag)))
        .unwrap_or_default()
}

impl RedisPublisher {
    /// The channels `instance` probes on: one, or one per master of a cluster (read from
    /// `CLUSTER SLOTS`; `None` when it cannot be read now).
    pub(super) async fn probe_channels(&self, instance: &str) -> Option<Vec<String>> {
        if !self.commands.is_cluster() {
            return Some(vec![self.names.probe(instance)]);
        }
        let slots: Vec<redis::Value> = match self
            .commands
            .query(&redis::cmd("CLUSTER").arg("SLOTS").clone())
            .await
        {
            Ok(slots) => slots,
            Err(e) => {
                tracing::debug!(error = %describe(&e), "the cluster's slots cannot be read");
                return None;
            }
        };
        // One probe per master: the first range of each is enough.
        let mut masters: Vec<(String, u16, u16)> = Vec::new();
        for range in slots {
            let Ok((first, last, master, ..)) =
                redis::from_redis_value::<(u16, u16, Vec<redis::Value>, Vec<redis::Value>)>(
                    range.clone(),
                )
                .or_else(|_| {
                    redis::from_redis_value::<(u16, u16, Vec<redis::Value>)>(range)
                        .map(|(a, b, c)| (a, b, c, Vec::new()))
                })
            else {
                continue;
            };
            let node = format!("{master:?}");
            if !masters.iter().any(|(known, ..)| *known == node) {
                masters.push((node, first, last));
            }
        }
        let channels = masters
            .iter()
            .map(|(_, first, last)| self.names.probe_in(instance, &tag_in(*first, *last)))
            .collect();
        Some(channels)
    }

    /// Publishes a probe on `channel`.
    pub(super) async fn probe(&self, channel: &str) -> redis::RedisResult<i64> {
        let mut probe = redis::cmd(if self.commands.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        });
        probe.arg(channel).arg("probe");
        self.commands.query(&probe).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // From CLUSTER KEYSLOT.
        assert_eq!(slot("user:42"), 15_880);
        assert_eq!(
            crc16::State::<crc16::XMODEM>::calculate(b"123456789"),
            0x31c3
        );
        assert_eq!(slot("probe-0"), slot("probe-0"));
        assert_eq!(slot_of_key("sseor:{user:42}:history"), 15_880);
        assert_eq!(slot_of_key("a{}b"), slot("a{}b"));
        let tag = tag_in(100, 200);
        assert!((100..=200).contains(&slot(&tag)), "{tag}");
    }
}
