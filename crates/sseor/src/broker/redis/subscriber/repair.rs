//! What the streams missed: where every followed target stands once the subscription is
//! back, the events a gap skipped read back from the history and delivered in order, and
//! the resets of what the history no longer holds or numbers given twice.

use super::SUBSCRIBE_BATCH;

use super::Subscriber;
use crate::broker::redis::commands::describe;
use crate::broker::redis::history::Entry;
use crate::broker::redis::tracked::{self, Seen, Step};
use crate::broker::resume::{MISSED_EVENTS_GONE, REDIS_LOST_HISTORY};
use crate::{Position, Target};

impl Subscriber {
    /// Once subscribed: reads where every target followed stands, and delivers what its
    /// streams missed while the subscription was down (or resets them when that cannot be
    /// told). The first time, it only learns where the targets stand.
    ///
    /// # Errors
    /// Why Redis cannot tell where the targets stand now: the subscription starts over,
    /// and the streams wait for what they missed, open.
    pub(super) async fn catch_up(&mut self) -> std::result::Result<(), String> {
        if !self.policy_checked {
            self.policy_checked = true;
            self.warn_if_evicting().await;
        }
        let targets: Vec<Target> = self.wanted.keys().cloned().collect();
        for batch in targets.chunks(SUBSCRIBE_BATCH) {
            let now = self.read_positions(batch).await?;
            for (target, now) in batch.iter().zip(now) {
                self.returned(target, now).await;
            }
            self.shared.health().was_busy();
        }
        Ok(())
    }

    /// Where `targets` stand; why not when Redis cannot tell. The command connection may
    /// be reconnecting too, just after the subscription came back: its first answers can
    /// be errors.
    async fn read_positions(
        &self,
        targets: &[Target],
    ) -> std::result::Result<Vec<Position>, String> {
        let mut failed = String::new();
        for _ in 0..3 {
            match self.publisher.positions(targets).await {
                Ok(now) => return Ok(now),
                Err(e) => failed = format!("cannot tell what was missed: {e}"),
            }
            tokio::time::sleep(self.shared.options.probe_interval / 2).await;
        }
        Err(failed)
    }

    /// What the streams of `target` need now that it stands at `now`.
    pub(super) async fn returned(&mut self, target: &Target, now: Position) {
        let Some(&Some(seen)) = self.wanted.get(target) else {
            self.see(
                target,
                Seen {
                    position: now,
                    ms: 0,
                },
            );
            return;
        };
        match tracked::on_return(seen, now) {
            None | Some(Step::Deliver) => {}
            Some(Step::Repair(from)) => self.repair(target, seen, from, now).await,
            Some(Step::NewEpoch) => self.reset(target, now, REDIS_LOST_HISTORY),
            Some(Step::Rewound) => self.rewound(target, seen).await,
        }
    }

    pub(super) fn see(&mut self, target: &Target, seen: Seen) {
        if let Some(known) = self.wanted.get_mut(target) {
            *known = Some(seen);
        }
    }

    /// Reads the events of `target` from `from` on (through `now` at least) from the
    /// history and delivers them in order; resets the target's streams when the history
    /// no longer holds them, or when the event seen last is not the one it holds (its
    /// number was given again: events were lost).
    pub(super) async fn repair(&mut self, target: &Target, seen: Seen, from: u64, now: Position) {
        // The event seen last is read too, when its time is known, to check it is the same.
        let check = seen.ms > 0 && from > 1 && seen.position.epoch() == now.epoch();
        let start = if check { from - 1 } else { from };
        let entries = match self.publisher.entries(target, now.epoch(), start).await {
            Ok(Ok(entries)) => entries,
            Ok(Err(_)) | Err(_) => return self.reset(target, now, MISSED_EVENTS_GONE),
        };
        let mut entries = entries.as_slice();
        if check {
            match entries.split_first() {
                Some((last_seen, rest)) if last_seen.seq == start => {
                    if last_seen.ms != seen.ms {
                        return self.rewound(target, seen).await;
                    }
                    entries = rest;
                }
                _ => {}
            }
        }
        if entries.first().is_none_or(|first| first.seq != from) {
            return self.reset(target, now, MISSED_EVENTS_GONE);
        }
        tracing::debug!(%target, from, events = entries.len(), "missed events delivered from the history");
        for entry in entries {
            self.deliver_entry(target, now.epoch(), entry);
        }
    }

    fn deliver_entry(&mut self, target: &Target, epoch: u32, entry: &Entry) {
        let position = Position::new(epoch, entry.seq);
        if let Err(e) = self.fanout.deliver(target, Some(position), &entry.event) {
            tracing::warn!(%target, error = %e, "invalid event skipped");
        }
        self.see(
            target,
            Seen {
                position,
                ms: entry.ms,
            },
        );
    }

    /// Sends the streams of `target` a reset to `position` (where their clients continue
    /// from), and follows the target from there.
    pub(super) fn reset(&mut self, target: &Target, position: Position, reason: &str) {
        let streams = self.fanout.reset(target, position, reason);
        tracing::warn!(%target, streams, "{reason}: the streams of the target get a reset");
        self.see(target, Seen { position, ms: 0 });
    }

    /// The number of `target` went back: its sequence gets a new epoch (so that no client
    /// takes a number given again for the event it had), and its streams a reset.
    async fn rewound(&mut self, target: &Target, seen: Seen) {
        let mut call = redis::cmd("FCALL");
        call.arg("sseor_rewound")
            .arg(2)
            .arg(self.publisher.names.sequence(target))
            .arg(self.publisher.names.history(target))
            .arg(seen.position.epoch())
            .arg(seen.position.seq());
        let renewed = self
            .publisher
            .with_functions(|| self.publisher.commands.query::<(u32, u64)>(&call))
            .await;
        let now = match renewed {
            Ok((epoch, seq)) => Position::new(epoch, seq),
            Err(e) => {
                tracing::warn!(error = %describe(&e), "a rewound sequence cannot be renewed; ending streams");
                self.fanout.release_all();
                return;
            }
        };
        self.reset(
            target,
            now,
            "events were lost (Redis failed over, or restarted from an older snapshot)",
        );
    }

    /// Says so when Redis may evict keys: an evicted history stream or trim marker would
    /// make a resume look complete when it is not. Managed Redis services often refuse
    /// `CONFIG`: then nothing is said.
    async fn warn_if_evicting(&self) {
        let mut config = redis::pipe();
        config
            .cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy");
        let Ok((limit, policy)) = self
            .publisher
            .commands
            .pipeline::<(Vec<String>, Vec<String>)>(&config)
            .await
        else {
            return;
        };
        let limited = limit.get(1).is_some_and(|bytes| bytes != "0");
        let policy = policy.get(1).map_or("", String::as_str);
        if limited && policy != "noeviction" && !policy.is_empty() {
            tracing::warn!(
                policy,
                "Redis may evict keys (maxmemory with an evicting policy): a history it \
                 evicts is lost without a reset; use maxmemory-policy noeviction"
            );
        }
    }
}
