//! Reading each target's sequence and history back from Redis, for streams that start and
//! for gaps found on live ones.

use std::collections::HashMap;

use futures_util::future::try_join_all;

use super::RedisPublisher;
use super::commands::unavailable;
use super::envelope::{Envelope, envelope};
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

/// The entries of a history as the publish function keeps them (the messages it
/// published), which must be the events of `epoch` numbered on from `from` (or from a
/// later number, when the older ones were trimmed); `None` when one is not.
fn history_entries(messages: &[Vec<u8>], epoch: u32, from: u64) -> Option<Vec<Entry>> {
    let mut entries: Vec<Entry> = Vec::with_capacity(messages.len());
    for message in messages {
        let Envelope { position, ms, json } = envelope(message)?;
        let expected = entries.last().map_or(from, |last| last.seq + 1);
        let in_place = if entries.is_empty() {
            position.seq() >= expected
        } else {
            position.seq() == expected
        };
        if position.epoch() != epoch || !in_place {
            return None;
        }
        let event = serde_json::from_str::<Event>(&json).ok()?;
        entries.push(Entry {
            seq: position.seq(),
            ms,
            event,
        });
    }
    Some(entries)
}

/// The position a sequence's fields hold: `e`, `DEADLINE:EPOCH`, and the number under the
/// field named by the epoch. Epoch 0 when there is none (a sequence of the older form, the
/// epoch alone in `e`, is turned into this one by the next publish).
fn sequence_position(fields: &HashMap<String, String>) -> Position {
    let epoch = fields
        .get("e")
        .and_then(|state| state.split_once(':'))
        .map(|(_, epoch)| epoch);
    let Some((epoch, number)) = epoch.and_then(|epoch| Some((epoch.parse::<u32>().ok()?, epoch)))
    else {
        return Position::default();
    };
    let seq = fields.get(number).and_then(|seq| seq.parse().ok());
    Position::new(epoch, seq.unwrap_or(0))
}

impl RedisPublisher {
    /// Where `target` stands: epoch 0 when it has no sequence.
    pub(super) async fn position(&self, target: &Target) -> Result<Position> {
        let mut read = redis::cmd("HGETALL");
        read.arg(self.names.sequence(target));
        let fields: HashMap<String, String> =
            self.commands.query(&read).await.map_err(unavailable)?;
        Ok(sequence_position(&fields))
    }

    /// Where each of `targets` stands, read at once.
    pub(super) async fn positions(&self, targets: &[Target]) -> Result<Vec<Position>> {
        if self.commands.is_cluster() {
            // A pipeline goes to one node: on a cluster, each read goes to its own.
            return try_join_all(targets.iter().map(|target| self.position(target))).await;
        }
        let mut reads = redis::pipe();
        for target in targets {
            reads.cmd("HGETALL").arg(self.names.sequence(target));
        }
        let read: Vec<HashMap<String, String>> =
            self.commands.pipeline(&reads).await.map_err(unavailable)?;
        Ok(read.iter().map(sequence_position).collect())
    }

    /// The events of `target`'s history in `epoch` numbered `from` and later (from its
    /// oldest, when that is later); `Err` with the reason when an entry cannot be read.
    pub(super) async fn entries(
        &self,
        target: &Target,
        epoch: u32,
        from: u64,
    ) -> Result<std::result::Result<Vec<Entry>, Reason>> {
        let mut read = redis::cmd("FCALL");
        read.arg("sseor_history")
            .arg(1)
            .arg(self.names.history(target))
            .arg(from);
        let messages: Vec<Vec<u8>> = self
            .with_functions(|| self.commands.query(&read))
            .await
            .map_err(unavailable)?;
        Ok(history_entries(&messages, epoch, from).ok_or_else(|| {
            tracing::warn!(%target, "history entry that is not an event of the sequence");
            Reason::Unreadable
        }))
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
            let entries = match self.entries(target, now.epoch(), first).await? {
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

    /// What `target`'s history holds after `after` (all of it when `None`), with the
    /// target's position now; a reset when `after` is no longer in it.
    pub(super) async fn history(&self, target: Target, after: Option<Position>) -> Result<History> {
        if after.is_some() {
            return self.resume(&[(target, after)]).await;
        }
        let now = self.position(&target).await?;
        if now.epoch() == 0 {
            return Ok(History::Events {
                events: Vec::new(),
                positions: vec![(target, now)],
            });
        }
        let entries = match self.entries(&target, now.epoch(), 1).await? {
            Ok(entries) => entries,
            Err(reason) => return Ok(reason.reset(vec![(target, now)])),
        };
        // Read after the position: events published meanwhile are in it too.
        let last = entries
            .last()
            .map_or(now.seq(), |entry| entry.seq.max(now.seq()));
        let events = entries
            .into_iter()
            .map(|entry| {
                let position = Position::new(now.epoch(), entry.seq);
                (target.clone(), position, entry.event)
            })
            .collect();
        Ok(History::Events {
            events,
            positions: vec![(target, Position::new(now.epoch(), last))],
        })
    }
}
