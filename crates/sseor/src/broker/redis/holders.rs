//! Lifecycles across instances: which instances hold streams of each user and topic.
//!
//! Each user and topic has a set of the instances that hold its streams
//! (`PREFIX:{user:ID}:holders`, in the target's own slot); `sseor_hold` and
//! `sseor_release` change it atomically and say whether the change was the first arrival
//! or the last departure anywhere, so that exactly one instance reports it. Each instance
//! also keeps the list of what it holds (`PREFIX:{presence}:INSTANCE:held`, with no
//! expiry): when its presence expires (it died, or lost Redis for longer than the
//! presence TTL), a survivor claims it atomically (`sseor_claim_departed`), releases
//! everything it held, reports what became vacant, and leaves a mark
//! (`...:swept`). An instance that finds its list gone writes it again: silently when
//! Redis lost its data (a restart without persistence: every instance does the same, and
//! a storm of false arrivals is worse than none), reporting what it holds when it was
//! swept (it had been reported gone).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::commands::{Commands, unavailable};
use super::{RedisPublisher, Shared};
use crate::position::unix_millis;
use crate::{Error, Lifecycle, LifecycleHooks, Occupancy, Result, Target};

/// How many held targets of a departed instance are released in one pipeline.
const RELEASED_AT_ONCE: usize = 500;

/// How long the mark of a swept instance lasts.
const SWEPT_MARK_LIFETIME: Duration = Duration::from_secs(3600);

/// The field of the list of what an instance holds that keeps the list while it holds
/// nothing: so that a list gone means Redis lost it, or a survivor swept it.
const KEEP: &str = "";

/// What this instance holds for lifecycles, in Redis and as it last wrote it there.
pub(super) struct Holders {
    publisher: RedisPublisher,
    shared: Arc<Shared>,
    hooks: LifecycleHooks,
    /// What Redis recorded this instance as holding: written again whole when Redis lost
    /// it. Held across each update, so that updates apply in order.
    held: tokio::sync::Mutex<HashSet<Target>>,
}

impl Holders {
    pub(super) fn new(
        publisher: RedisPublisher,
        shared: Arc<Shared>,
        hooks: LifecycleHooks,
    ) -> Self {
        Self {
            publisher,
            shared,
            hooks,
            held: tokio::sync::Mutex::default(),
        }
    }

    fn commands(&self) -> &Commands {
        &self.publisher.commands
    }

    /// Records `changes` in order, and tells for each whether it was the first arrival
    /// (or last departure) anywhere. Writes the list of what this instance holds again
    /// first when Redis lost it.
    pub(super) async fn record(&self, changes: &[Occupancy]) -> Result<Vec<bool>> {
        let mut held = self.held.lock().await;
        let names = &self.shared.names;
        let list = names.held(&self.shared.instance);
        let joining: Vec<String> = changes
            .iter()
            .filter(|change| change.occupied)
            .map(|change| held_name(&change.target))
            .collect();
        // The list first: a crash before the holders set is written leaves nothing a
        // survivor cannot release.
        let mut first = redis::pipe();
        first
            .sadd(&list, KEEP)
            .exists(names.swept(&self.shared.instance));
        if !joining.is_empty() {
            first.sadd(&list, &joining).ignore();
        }
        let (created, swept): (u8, bool) = self
            .commands()
            .pipeline(&first)
            .await
            .map_err(unavailable)?;
        let lost = created == 1 && !held.is_empty();
        let changed: HashSet<&Target> = changes.iter().map(|change| &change.target).collect();
        let rejoining: Vec<Occupancy> = if lost {
            let again = held.iter().filter(|target| !changed.contains(target));
            again
                .map(|target| Occupancy::new(target.clone(), true))
                .collect()
        } else {
            Vec::new()
        };
        if lost {
            tracing::info!(
                held = held.len(),
                swept,
                "Redis lost what this instance holds for lifecycles; writing it again"
            );
            let names: Vec<String> = rejoining.iter().map(|c| held_name(&c.target)).collect();
            if !names.is_empty() {
                let mut sadd = redis::cmd("SADD");
                sadd.arg(&list).arg(names);
                self.commands()
                    .query::<()>(&sadd)
                    .await
                    .map_err(unavailable)?;
            }
        }
        let mut calls = rejoining.clone();
        calls.extend(changes.iter().cloned());
        let firsts = self.hold_or_release(&calls, &self.shared.instance).await?;
        let (rejoined, firsts) = firsts.split_at(rejoining.len());
        let leaving: Vec<String> = changes
            .iter()
            .filter(|change| !change.occupied)
            .map(|change| held_name(&change.target))
            .collect();
        if !leaving.is_empty() {
            let mut srem = redis::cmd("SREM");
            srem.arg(&list).arg(&leaving);
            self.commands()
                .query::<()>(&srem)
                .await
                .map_err(unavailable)?;
        }
        for change in changes {
            if change.occupied {
                held.insert(change.target.clone());
            } else {
                held.remove(&change.target);
            }
        }
        if swept && lost {
            self.report_rejoined(&rejoining, rejoined).await;
        }
        Ok(firsts.to_vec())
    }

    /// After a survivor swept this instance: its users and topics that are first anywhere
    /// again are reported, and the mark is removed.
    async fn report_rejoined(&self, rejoining: &[Occupancy], firsts: &[bool]) {
        for (change, first) in rejoining.iter().zip(firsts) {
            if let (true, Some(lifecycle)) = (*first, Lifecycle::of(change)) {
                self.hooks.report(&lifecycle);
            }
        }
        let mut unmark = redis::cmd("DEL");
        unmark.arg(self.shared.names.swept(&self.shared.instance));
        let _ = self.commands().query::<()>(&unmark).await;
    }

    /// Runs `sseor_hold` or `sseor_release` for each change, for `instance`; whether each
    /// was the first arrival (or last departure) anywhere.
    async fn hold_or_release(&self, changes: &[Occupancy], instance: &str) -> Result<Vec<bool>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        // One call each, at once over the multiplexed connection: a cluster takes no
        // pipeline whose keys span slots, and each target has a slot of its own.
        let calls = changes.iter().map(|change| {
            let function = if change.occupied {
                "sseor_hold"
            } else {
                "sseor_release"
            };
            let mut call = redis::cmd("FCALL");
            call.arg(function)
                .arg(1)
                .arg(self.shared.names.holders(&change.target))
                .arg(instance);
            async move {
                let call = &call;
                let first: u8 = self
                    .publisher
                    .with_functions(|| self.commands().query(call))
                    .await
                    .map_err(unavailable)?;
                Ok::<_, Error>(first)
            }
        });
        let firsts = futures_util::future::try_join_all(calls).await?;
        Ok(firsts.into_iter().map(|first| first == 1).collect())
    }

    /// Every refresh of the presence: when hooks listen, checks that Redis still has what
    /// this instance holds; then releases what departed instances held.
    pub(super) async fn maintain(&self, ttl: Duration) {
        if self.hooks.is_heard()
            && let Err(e) = self.record(&[]).await
        {
            tracing::debug!(error = %e, "lifecycle record not checked");
        }
        if let Err(e) = self.sweep(ttl).await {
            tracing::debug!(error = %e, "departed instances not swept");
        }
    }

    /// Claims the instances whose presence expired, and releases what each held.
    async fn sweep(&self, ttl: Duration) -> Result<()> {
        let names = &self.shared.names;
        let now = unix_millis();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut claim = redis::cmd("FCALL");
        claim
            .arg("sseor_claim_departed")
            .arg(2)
            .arg(names.instances())
            .arg(names.departed())
            .arg(now)
            .arg(now.saturating_add(ttl_ms.saturating_mul(4)))
            .arg(&self.shared.instance);
        let claimed: Vec<String> = self
            .publisher
            .with_functions(|| self.commands().query(&claim))
            .await
            .map_err(unavailable)?;
        for departed in claimed {
            self.release_departed(&departed).await?;
        }
        Ok(())
    }

    /// Releases everything `departed` held, reports what became vacant, and forgets it.
    async fn release_departed(&self, departed: &str) -> Result<()> {
        let names = &self.shared.names;
        let list = names.held(departed);
        let mut members = redis::cmd("SMEMBERS");
        members.arg(&list);
        let members: Vec<String> = self.commands().query(&members).await.map_err(unavailable)?;
        let held: Vec<(String, Target)> = members
            .into_iter()
            .filter_map(|name| held_target(&name).map(|target| (name, target)))
            .collect();
        let mut reported = 0;
        for chunk in held.chunks(RELEASED_AT_ONCE) {
            let releases: Vec<Occupancy> = chunk
                .iter()
                .map(|(_, target)| Occupancy::new(target.clone(), false))
                .collect();
            let lasts = self.hold_or_release(&releases, departed).await?;
            for (release, last) in releases.iter().zip(lasts) {
                if let (true, Some(lifecycle)) = (last, Lifecycle::of(release)) {
                    self.hooks.report(&lifecycle);
                    reported += 1;
                }
            }
            let mut srem = redis::cmd("SREM");
            srem.arg(&list)
                .arg(chunk.iter().map(|(name, _)| name).collect::<Vec<_>>());
            self.commands()
                .query::<()>(&srem)
                .await
                .map_err(unavailable)?;
        }
        let mut forget = redis::pipe();
        forget
            .del(&names.presence_keys(departed)[..])
            .ignore()
            .del(&list)
            .ignore()
            .zrem(names.departed(), departed)
            .ignore();
        if !held.is_empty() {
            let mark_ms = u64::try_from(SWEPT_MARK_LIFETIME.as_millis()).unwrap_or(u64::MAX);
            forget
                .cmd("SET")
                .arg(names.swept(departed))
                .arg(1)
                .arg("PX")
                .arg(mark_ms)
                .ignore();
        }
        self.commands()
            .pipeline::<()>(&forget)
            .await
            .map_err(unavailable)?;
        if held.is_empty() {
            return Ok(());
        }
        tracing::info!(
            instance = departed,
            released = held.len(),
            reported,
            "released what a departed instance held"
        );
        Ok(())
    }

    /// Whether this instance holds anything for lifecycles: at shutdown, then, it hands
    /// what it holds over to the survivors rather than leaving at once.
    pub(super) async fn holds_anything(&self) -> bool {
        !self.held.lock().await.is_empty()
    }
}

/// The name of `target` in the list of what an instance holds: `u:ID` or `t:NAME`.
fn held_name(target: &Target) -> String {
    match target {
        Target::User(user) => format!("u:{user}"),
        Target::Topic(topic) => format!("t:{topic}"),
        Target::All => String::new(),
    }
}

/// The target named `name` in the list of what an instance holds.
fn held_target(name: &str) -> Option<Target> {
    if let Some(user) = name.strip_prefix("u:") {
        return Target::user(user).ok();
    }
    Target::topic(name.strip_prefix("t:")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_names_map_back_to_their_targets() {
        for target in [Target::user("u:1").unwrap(), Target::topic("t:x").unwrap()] {
            assert_eq!(held_target(&held_name(&target)), Some(target));
        }
        assert_eq!(held_target(KEEP), None);
    }
}
