//! Reading the history back from Redis, for clients that resume: each target's events are
//! kept in a stream, with the newest event trimmed from it.

use super::RedisPublisher;
use super::commands::unavailable;
use crate::broker::History;
use crate::broker::resume::{Loss, Reason, Resume};
use crate::{Event, Position, Result, Target};

/// The sequence number in a history stream entry's id, `MS-SEQ`.
fn stream_seq(id: &str) -> Option<u64> {
    id.rsplit_once('-').and_then(|(_, seq)| seq.parse().ok())
}

/// The sequence number and event of a history entry as the publish script writes it
/// (its one field `e` holding the event); `None` for anything else.
fn history_entry(id: &str, fields: &[(String, String)]) -> Option<(u64, Event)> {
    let seq = stream_seq(id).filter(|&seq| seq > 0)?;
    let [(name, json)] = fields else { return None };
    if name != "e" {
        return None;
    }
    let event = serde_json::from_str::<Event>(json).ok()?;
    Some((seq, event))
}

impl RedisPublisher {
    /// The position of the latest event published; `None` before the first one (or after
    /// Redis lost its data).
    pub(super) async fn current(&self) -> Result<Option<Position>> {
        let mut state = redis::pipe();
        state
            .get(self.names.epoch())
            .hget(self.names.clock(), "ms")
            .hget(self.names.clock(), "seq");
        let (epoch, ms, seq): (Option<String>, Option<u64>, Option<u64>) =
            self.commands.pipeline(&state).await.map_err(unavailable)?;
        Ok(epoch.map(|epoch| Position::new(epoch, ms.unwrap_or(0), seq.unwrap_or(0))))
    }

    /// What a client resuming from `after` missed of `targets`, or the reset it gets.
    pub(super) async fn history(
        &self,
        targets: &[Target],
        after: Option<&Position>,
    ) -> Result<History> {
        let resume = Resume {
            current: self.current().await?,
            loss: Loss::Redis,
        };
        let after = match resume.check(after, self.retention.max_age) {
            Ok(after) => after,
            Err(reason) => return Ok(resume.reset(reason)),
        };
        let mut missed = Vec::new();
        for target in targets {
            let stream = self.names.history(target);
            if self.trimmed_after(target, after).await? {
                return Ok(resume.reset(Reason::TooOld));
            }
            let mut range = redis::cmd("XRANGE");
            range
                .arg(&stream)
                .arg(format!("({}-{}", after.ms(), after.seq()))
                .arg("+");
            let entries: Vec<(String, Vec<(String, String)>)> =
                self.commands.query(&range).await.map_err(unavailable)?;
            for (id, fields) in entries {
                let Some(entry) = history_entry(&id, &fields) else {
                    tracing::warn!(stream, entry = id, "history entry that is not an event");
                    return Ok(resume.reset(Reason::Unreadable));
                };
                missed.push(entry);
            }
        }
        // What the position read first covers; later events come live.
        Ok(resume.replay(missed))
    }

    /// Whether the history of `target` lost, to trimming, an event after `after`. A
    /// history that expired whole lost nothing recent: it expires only when its newest
    /// event is older than the retention, and so is any position before it.
    async fn trimmed_after(&self, target: &Target, after: &Position) -> Result<bool> {
        let mut trimmed = redis::cmd("GET");
        trimmed.arg(self.names.trimmed(target));
        let trimmed: Option<String> = self.commands.query(&trimmed).await.map_err(unavailable)?;
        let trimmed_seq = trimmed.as_deref().and_then(stream_seq).unwrap_or(0);
        Ok(after.seq() < trimmed_seq)
    }
}
