//! Reading each target's sequence and history back from Redis, for streams that start and
//! for gaps found on live ones.

use futures_util::future::try_join_all;

use super::RedisPublisher;
use super::commands::unavailable;
use crate::broker::resume::{self, Loss, Need, Reason};
use crate::broker::{History, Replayed};
use crate::{Event, Position, Result, Target};

/// An event read back from a history: its number, when it was published (Unix ms), and
/// the event.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) seq: u64,
    pub(super) ms: u64,
    pub(super) event: Event,
}

/// The number and time in a history entry's id, `SEQ-MS`.
fn entry_id(id: &str) -> Option<(u64, u64)> {
    let (seq, ms) = id.split_once('-')?;
    Some((seq.parse().ok()?, ms.parse().ok()?))
}

/// An entry as the publish function writes it (its one field `e` holding the event);
/// `None` for anything else.
fn history_entry(id: &str, fields: &[(String, String)]) -> Option<Entry> {
    let (seq, ms) = entry_id(id).filter(|&(seq, _)| seq > 0)?;
    let [(name, json)] = fields else { return None };
    if name != "e" {
        return None;
    }
    let event = serde_json::from_str::<Event>(json).ok()?;
    Some(Entry { seq, ms, event })
}

/// The position a sequence's fields `e` and `s` hold: epoch 0 when there is none.
fn sequence_position(epoch: Option<u32>, seq: Option<u64>) -> Position {
    epoch.map_or_else(Position::default, |epoch| {
        Position::new(epoch, seq.unwrap_or(0))
    })
}

impl RedisPublisher {
    /// Where `target` stands: epoch 0 when it has no sequence.
    pub(super) async fn position(&self, target: &Target) -> Result<Position> {
        let mut read = redis::cmd("HMGET");
        read.arg(self.names.sequence(target)).arg("e").arg("s");
        let (epoch, seq): (Option<u32>, Option<u64>) =
            self.commands.query(&read).await.map_err(unavailable)?;
        Ok(sequence_position(epoch, seq))
    }

    /// Where each of `targets` stands, read at once.
    pub(super) async fn positions(&self, targets: &[Target]) -> Result<Vec<Position>> {
        if self.commands.is_cluster() {
            // A pipeline goes to one node: on a cluster, each read goes to its own.
            return try_join_all(targets.iter().map(|target| self.position(target))).await;
        }
        let mut reads = redis::pipe();
        for target in targets {
            reads
                .cmd("HMGET")
                .arg(self.names.sequence(target))
                .arg("e")
                .arg("s");
        }
        let read: Vec<(Option<u32>, Option<u64>)> =
            self.commands.pipeline(&reads).await.map_err(unavailable)?;
        Ok(read
            .into_iter()
            .map(|(epoch, seq)| sequence_position(epoch, seq))
            .collect())
    }

    /// The events of `target`'s history numbered `from` and later, at most `count`;
    /// `Err` with the reason when an entry cannot be read.
    pub(super) async fn entries(
        &self,
        target: &Target,
        from: u64,
        count: Option<usize>,
    ) -> Result<std::result::Result<Vec<Entry>, Reason>> {
        let mut range = redis::cmd("XRANGE");
        range
            .arg(self.names.history(target))
            .arg(format!("{from}-0"))
            .arg("+");
        if let Some(count) = count {
            range.arg("COUNT").arg(count);
        }
        let raw: Vec<(String, Vec<(String, String)>)> =
            self.commands.query(&range).await.map_err(unavailable)?;
        let mut entries = Vec::with_capacity(raw.len());
        for (id, fields) in raw {
            let Some(entry) = history_entry(&id, &fields) else {
                tracing::warn!(%target, entry = id, "history entry that is not an event");
                return Ok(Err(Reason::Unreadable));
            };
            entries.push(entry);
        }
        Ok(Ok(entries))
    }

    /// What a stream that starts in each target at the position given needs.
    pub(super) async fn resume(&self, from: &[(Target, Option<Position>)]) -> Result<History> {
        let targets: Vec<Target> = from.iter().map(|(target, _)| target.clone()).collect();
        let now = self.positions(&targets).await?;
        let positions: Vec<(Target, Position)> = targets.into_iter().zip(now).collect();
        let mut missed = Vec::new();
        for ((target, after), (_, now)) in from.iter().zip(&positions) {
            let first = match resume::need(*after, *now, Loss::Redis) {
                Need::Nothing => continue,
                Need::From(first) => first,
                Need::Reset(reason) => return Ok(reason.reset(positions)),
            };
            let entries = match self.entries(target, first, None).await? {
                Ok(entries) => entries,
                Err(reason) => return Ok(reason.reset(positions)),
            };
            if let Err(reason) = resume::complete(entries.first().map(|e| e.seq), first, now.seq())
            {
                return Ok(reason.reset(positions));
            }
            missed.push(
                entries
                    .into_iter()
                    .map(|entry| {
                        let replayed: Replayed = (
                            target.clone(),
                            Position::new(now.epoch(), entry.seq),
                            entry.event,
                        );
                        (entry.ms, replayed)
                    })
                    .collect(),
            );
        }
        Ok(History::Events {
            events: resume::in_order(missed),
            positions,
        })
    }
}
