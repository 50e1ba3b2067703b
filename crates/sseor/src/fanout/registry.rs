//! The open streams of one instance, indexed by target, and the fan-out of encoded
//! events to them.
//!
//! One concept in one file: the registry's tables and every operation that must keep them
//! consistent under one lock (registering against the limits, delivering, letting go);
//! splitting them would spread that invariant over several files. About a quarter of the
//! file is its unit tests. What it tells of presence (counts by user and topic, local
//! arrivals and departures for lifecycles) is in `presence`.

mod presence;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::queue::{self, Queued, Quiet, SendError};
use super::{Barrier, CloseReason, Interest, Limits, Refused};
use crate::ConnectionLimit;
use crate::Target;
use crate::metrics::Metrics;

/// One open stream as the registry sees it: where its bytes go, and how to cut it off.
#[derive(Clone)]
pub(crate) struct Sink {
    tx: queue::Sender,
    /// Ends the stream at once, for a client that stopped reading: on HTTP/1 by closing
    /// its connection, on HTTP/2 by resetting only that stream.
    abort: Option<CancellationToken>,
}

impl Sink {
    pub(crate) fn new(tx: queue::Sender, abort: Option<CancellationToken>) -> Self {
        Self { tx, abort }
    }
}

/// A stream asking to be registered.
pub(crate) struct Opening {
    pub(crate) sink: Sink,
    pub(crate) targets: Vec<Target>,
    pub(crate) client_ip: Option<IpAddr>,
}

/// What the registry keeps per stream, kept small: every idle stream has one.
struct Entry {
    sink: Sink,
    targets: Vec<Target>,
    /// When the stream opened, in milliseconds since the registry started.
    opened_ms: u64,
}

impl Entry {
    fn user(&self) -> Option<&str> {
        user_of(&self.targets)
    }
}

fn user_of(targets: &[Target]) -> Option<&str> {
    targets.iter().find_map(|target| match target {
        Target::User(user) => Some(&**user),
        _ => None,
    })
}

#[derive(Default)]
struct Tables {
    closed: bool,
    connections: HashMap<u64, Entry>,
    by_target: HashMap<Target, HashMap<u64, Sink>>,
    /// Streams per client address, and each stream's address, kept only with a
    /// per-address limit.
    by_ip: HashMap<IpAddr, usize>,
    ip_of: HashMap<u64, IpAddr>,
    /// Users, topics and topic members whose counts changed since the broker last
    /// asked, kept only for brokers that publish presence.
    changed: presence::Changed,
}

impl Tables {
    /// The first limit `opening` would exceed, checked under the same lock as the
    /// registration itself so that concurrent opens cannot overshoot.
    fn over_limit(&self, limits: &Limits, opening: &Opening) -> Option<(ConnectionLimit, usize)> {
        let reached = |max: usize, open: usize| max > 0 && open >= max;
        if reached(limits.total, self.connections.len()) {
            return Some((ConnectionLimit::Total, limits.total));
        }
        let from_ip = opening
            .client_ip
            .and_then(|ip| self.by_ip.get(&ip).copied())
            .unwrap_or(0);
        if reached(limits.per_ip, from_ip) {
            return Some((ConnectionLimit::PerIp, limits.per_ip));
        }
        let of_user = opening
            .targets
            .iter()
            .find(|target| matches!(target, Target::User(_)))
            .and_then(|user| self.by_target.get(user))
            .map_or(0, HashMap::len);
        if reached(limits.per_user, of_user) {
            return Some((ConnectionLimit::PerUser, limits.per_user));
        }
        None
    }
}

/// The registry of local streams.
pub(crate) struct Registry {
    tables: RwLock<Tables>,
    next_id: AtomicU64,
    total: AtomicUsize,
    limits: Limits,
    /// Where interest changes go, once a broker asked for them (before any stream opens).
    interest: OnceLock<mpsc::UnboundedSender<Interest>>,
    /// Where the first arrival and last departure of each user and topic go, once the
    /// lifecycle task asked for them.
    occupancy: OnceLock<mpsc::UnboundedSender<crate::Occupancy>>,
    metrics: Arc<Metrics>,
    /// What the streams' opening times count from.
    started: Instant,
}

impl Registry {
    /// A registry that counts in `metrics`.
    pub(crate) fn new(limits: Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            tables: RwLock::default(),
            next_id: AtomicU64::new(1),
            total: AtomicUsize::new(0),
            limits,
            interest: OnceLock::new(),
            occupancy: OnceLock::new(),
            metrics,
            started: Instant::now(),
        }
    }

    /// From now on, every first arrival and last departure per target is reported to the
    /// receiver, in order, with the barriers streams wait behind. For the broker, before any
    /// stream opens; a second call gets a receiver that hears nothing.
    pub(crate) fn follow_interest(&self) -> mpsc::UnboundedReceiver<Interest> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.interest.set(tx);
        rx
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// What this instance counts, for `/metrics`.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Adds a stream and logs it; refused once the registry is closed or when a limit is
    /// reached. The stream stays registered until the returned guard is dropped (or the
    /// registry lets it go first).
    pub(crate) fn register(self: &Arc<Self>, opening: Opening) -> Result<Registration, Refused> {
        let user = user_of(&opening.targets).map(str::to_owned);
        let topics = opening
            .targets
            .iter()
            .filter(|target| matches!(target, Target::Topic(_)))
            .count();
        let client_ip = opening.client_ip;
        let registered = self.insert(opening);
        let client_ip = client_ip.map(tracing::field::display);
        match registered {
            Ok(id) => tracing::info!(connection = id, user, client_ip, topics, "stream opened"),
            Err(Refused::Limit(limit, max)) => {
                self.metrics.refused(limit.as_str());
                tracing::info!(
                    user,
                    client_ip,
                    limit = limit.as_str(),
                    max,
                    "stream refused: limit reached"
                );
            }
            Err(Refused::Closed) => {}
        }
        registered.map(|id| Registration {
            registry: self.clone(),
            id,
        })
    }

    fn insert(&self, opening: Opening) -> Result<u64, Refused> {
        let mut tables = self.write();
        if tables.closed {
            return Err(Refused::Closed);
        }
        if let Some((limit, max)) = tables.over_limit(&self.limits, &opening) {
            return Err(Refused::Limit(limit, max));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let Opening {
            sink,
            targets,
            client_ip,
        } = opening;
        if self.interest.get().is_some() {
            tables.changed.note(&targets);
        }
        for target in &targets {
            let slot = tables.by_target.entry(target.clone()).or_default();
            if slot.is_empty() {
                self.report(Interest::Subscribe(target.clone()));
                self.occupied(target, true);
            }
            slot.insert(id, sink.clone());
        }
        // Its head goes out now: its first heartbeat is due an interval from now.
        sink.tx.spoke_at(self.clock_ms());
        if let (true, Some(ip)) = (self.limits.per_ip > 0, client_ip) {
            *tables.by_ip.entry(ip).or_default() += 1;
            tables.ip_of.insert(id, ip);
        }
        let entry = Entry {
            sink,
            targets,
            opened_ms: self.now_ms(),
        };
        tables.connections.insert(id, entry);
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Removes a stream whose client left; its stream ends once its queue is drained.
    /// Idempotent: a stream the registry already let go is not logged twice.
    fn unregister(&self, id: u64) {
        self.remove(id, CloseReason::ClientLeft, false);
    }

    /// Ends a stream whose credential expired, once its queue is drained. Idempotent.
    pub(crate) fn expire(&self, id: u64) {
        self.remove(id, CloseReason::Expired, false);
    }

    /// Removes a stream, logs and counts why; whether it was still registered. With `cut`,
    /// the stream is aborted first, so that it cannot end cleanly by draining its queue
    /// once its senders are gone.
    fn remove(&self, id: u64, reason: CloseReason, cut: bool) -> bool {
        let entry = {
            let mut tables = self.write();
            let Some(entry) = tables.connections.remove(&id) else {
                return false;
            };
            if let (true, Some(abort)) = (cut, &entry.sink.abort) {
                abort.cancel();
            }
            self.detach(&mut tables, id, &entry);
            entry
        };
        log_closed(
            id,
            &entry,
            self.now_ms().saturating_sub(entry.opened_ms),
            reason,
        );
        self.metrics.closed(reason.as_str());
        true
    }

    /// Ends the streams of `of` (only those that also joined `joined`, when given) for
    /// `reason`, each once its queue is drained, after `last`: queued under the same lock
    /// that takes them out of every table, nothing can come after it. Returns how many.
    pub(crate) fn end_streams(
        &self,
        of: &Target,
        joined: Option<&Target>,
        last: &Queued,
        reason: CloseReason,
    ) -> usize {
        let ended: Vec<(u64, Entry)> = {
            let mut tables = self.write();
            let ids: Vec<u64> = tables
                .by_target
                .get(of)
                .map(|slot| slot.keys().copied().collect())
                .unwrap_or_default();
            let mut ended = Vec::with_capacity(ids.len());
            for id in ids {
                let chosen = tables
                    .connections
                    .get(&id)
                    .is_some_and(|entry| joined.is_none_or(|topic| entry.targets.contains(topic)));
                if !chosen {
                    continue;
                }
                if let Some(entry) = tables.connections.remove(&id) {
                    entry.sink.tx.send_last(last.clone());
                    self.detach(&mut tables, id, &entry);
                    ended.push((id, entry));
                }
            }
            ended
        };
        for (id, entry) in &ended {
            log_closed(
                *id,
                entry,
                self.now_ms().saturating_sub(entry.opened_ms),
                reason,
            );
            self.metrics.closed(reason.as_str());
        }
        ended.len()
    }

    /// Queues `frame` for every connection of `target` and returns how many took it.
    ///
    /// A connection whose queue is full under [`SlowConsumer::Disconnect`] is a slow
    /// consumer: it is removed and cut off, so that it cannot hold memory or slow the
    /// others.
    ///
    /// [`SlowConsumer::Disconnect`]: crate::SlowConsumer::Disconnect
    pub(crate) fn deliver(&self, target: &Target, frame: &Queued) -> usize {
        let mut delivered = 0;
        let mut overflowed = Vec::new();
        let now = self.clock_ms();
        {
            let tables = self.read();
            let Some(slot) = tables.by_target.get(target) else {
                return 0;
            };
            for (&id, sink) in slot {
                match sink.tx.try_send(frame.clone(), now) {
                    Ok(()) => delivered += 1,
                    Err(SendError::Full) => overflowed.push(id),
                    // The stream is gone; its guard is removing it.
                    Err(SendError::Closed) => {}
                }
            }
        }
        for id in overflowed {
            self.remove(id, CloseReason::SlowConsumer, true);
        }
        delivered
    }

    /// The streams of `target` in one of `slices` slices of them, by id.
    pub(crate) fn slice_of(&self, target: &Target, slice: u64, slices: u64) -> Vec<u64> {
        let tables = self.read();
        tables.by_target.get(target).map_or_else(Vec::new, |slot| {
            slot.keys()
                .copied()
                .filter(|id| id % slices == slice)
                .collect()
        })
    }

    /// Which streams of `checks` (each with a time on [`clock_ms`](Self::clock_ms)) still
    /// open on `target` queued nothing after their time and have nothing waiting: their
    /// places in `checks`. `active` gets those that carried frames since, as their place
    /// with the time of their last frame.
    pub(crate) fn silent(
        &self,
        target: &Target,
        checks: &[(u64, u32)],
        active: &mut Vec<(usize, u32)>,
    ) -> Vec<usize> {
        let now = self.clock_ms();
        let tables = self.read();
        let Some(slot) = tables.by_target.get(target) else {
            return Vec::new();
        };
        let mut silent = Vec::new();
        for (at, &(id, since)) in checks.iter().enumerate() {
            match slot.get(&id).map(|sink| sink.tx.quiet(now, since)) {
                Some(Quiet::Silent) => silent.push(at),
                Some(Quiet::Active(last)) => active.push((at, last)),
                Some(Quiet::Gone) | None => {}
            }
        }
        silent
    }

    /// Queues `frame` (a heartbeat) for each stream of `checks` still open on `target`
    /// that queued nothing after the time paired with it and has nothing waiting.
    pub(crate) fn heartbeat(&self, target: &Target, checks: &[(u64, u32)], frame: &Queued) {
        let now = self.clock_ms();
        let tables = self.read();
        let Some(slot) = tables.by_target.get(target) else {
            return;
        };
        for (id, since) in checks {
            if let Some(sink) = slot.get(id) {
                sink.tx.heartbeat(frame.clone(), now, *since);
            }
        }
    }

    /// Milliseconds since the registry started, wrapping: when frames were queued, for
    /// heartbeats.
    pub(crate) fn clock_ms(&self) -> u32 {
        // Truncation is the wrap: only differences of these are used.
        self.started.elapsed().as_millis() as u32
    }

    /// A barrier behind every interest change reported so far; `None` when no broker
    /// follows interest (then every registration is in effect at once).
    pub(crate) fn barrier(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let (passed, waiting) = tokio::sync::oneshot::channel();
        self.interest
            .get()?
            .send(Interest::Barrier(Barrier(passed)))
            .ok()?;
        Some(waiting)
    }

    /// Local streams of one target.
    pub(crate) fn count(&self, target: &Target) -> usize {
        self.read().by_target.get(target).map_or(0, HashMap::len)
    }

    /// Users with at least one local connection.
    #[cfg(feature = "prometheus")]
    pub(crate) fn distinct_users(&self) -> usize {
        let tables = self.read();
        tables
            .by_target
            .keys()
            .filter(|target| matches!(target, Target::User(_)))
            .count()
    }

    /// All local streams.
    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Refuses new connections from now on; open streams stay until released.
    pub(crate) fn close(&self) {
        self.write().closed = true;
    }

    /// Lets up to `count` open streams end once their queues are drained, for `reason`;
    /// returns how many it let go.
    pub(crate) fn release_some(&self, count: usize, reason: CloseReason) -> usize {
        let ids: Vec<u64> = self
            .read()
            .connections
            .keys()
            .take(count)
            .copied()
            .collect();
        ids.into_iter()
            .filter(|&id| self.remove(id, reason, false))
            .count()
    }

    /// Lets every open stream end once its queue is drained; returns how many there were.
    pub(crate) fn release_all(&self, reason: CloseReason) -> usize {
        self.release_some(usize::MAX, reason)
    }

    fn detach(&self, tables: &mut Tables, id: u64, entry: &Entry) {
        if self.interest.get().is_some() {
            tables.changed.note(&entry.targets);
        }
        for target in &entry.targets {
            let Some(slot) = tables.by_target.get_mut(target) else {
                continue;
            };
            slot.remove(&id);
            if slot.is_empty() {
                tables.by_target.remove(target);
                self.report(Interest::Unsubscribe(target.clone()));
                self.occupied(target, false);
            }
        }
        if let Some(ip) = tables.ip_of.remove(&id)
            && let std::collections::hash_map::Entry::Occupied(mut open) = tables.by_ip.entry(ip)
        {
            *open.get_mut() -= 1;
            if *open.get() == 0 {
                open.remove();
            }
        }
        self.total.fetch_sub(1, Ordering::Relaxed);
    }

    fn report(&self, change: Interest) {
        if let Some(interest) = self.interest.get() {
            // A broker that stopped listening needs no more reports.
            let _ = interest.send(change);
        }
    }

    // A panic elsewhere cannot leave these tables half-written: every change is applied
    // in full under the lock, so a poisoned lock is still consistent.
    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A registered stream, unregistered when dropped: when its client goes away or its
/// response ends.
pub(crate) struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Registration {
    /// The stream's id, as in the logs.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.unregister(self.id);
    }
}

/// The one line logged when a stream ends (outside the registry's lock).
fn log_closed(id: u64, entry: &Entry, duration_ms: u64, reason: CloseReason) {
    let user = entry.user();
    let dropped = entry.sink.tx.dropped();
    if reason == CloseReason::SlowConsumer {
        tracing::warn!(
            connection = id,
            user,
            duration_ms,
            reason = reason.as_str(),
            dropped,
            "stream closed: the client stopped reading (queue full)"
        );
    } else {
        tracing::info!(
            connection = id,
            user,
            duration_ms,
            reason = reason.as_str(),
            dropped,
            "stream closed"
        );
    }
}

#[cfg(test)]
mod tests;
