//! The local connections of one instance, indexed by target, and the fan-out of encoded
//! events to them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Target;
use crate::metrics::Metrics;
use crate::queue::{self, Queued, SendError};

/// A change in local interest in a target, which a broker that carries events between
/// instances turns into a subscription or an unsubscription.
#[derive(Debug)]
#[non_exhaustive]
pub enum Interest {
    /// The first local connection for this target arrived.
    Subscribe(Target),
    /// The last local connection for this target left.
    Unsubscribe(Target),
    /// To be passed once every change reported before it is in effect: a resuming stream
    /// reads history only after its subscriptions are live, so that nothing published in
    /// between is lost.
    Barrier(Barrier),
}

/// See [`Interest::Barrier`].
#[derive(Debug)]
pub struct Barrier(tokio::sync::oneshot::Sender<()>);

impl Barrier {
    /// Tells the waiting stream that the changes before this barrier are in effect.
    pub fn pass(self) {
        let _ = self.0.send(());
    }
}

/// One open stream as the registry sees it: where its bytes go, and how to cut it off.
#[derive(Clone)]
pub(crate) struct Sink {
    tx: queue::Sender,
    /// Closes the underlying HTTP connection, for a client that stopped reading.
    abort: Option<CancellationToken>,
}

impl Sink {
    pub(crate) fn new(tx: queue::Sender, abort: Option<CancellationToken>) -> Self {
        Self { tx, abort }
    }
}

struct Entry {
    sink: Sink,
    targets: Vec<Target>,
}

#[derive(Default)]
struct Tables {
    closed: bool,
    connections: HashMap<u64, Entry>,
    by_target: HashMap<Target, HashMap<u64, Sink>>,
    /// Users whose number of connections changed since the broker last asked, kept only
    /// for brokers that publish presence.
    changed_users: std::collections::HashSet<Arc<str>>,
}

impl Tables {
    fn note_change(&mut self, tracked: bool, target: &Target) {
        if let (true, Target::User(user)) = (tracked, target) {
            self.changed_users.insert(user.clone());
        }
    }
}

/// The registry of local connections.
pub(crate) struct Registry {
    tables: RwLock<Tables>,
    next_id: AtomicU64,
    total: AtomicUsize,
    interest: Option<mpsc::UnboundedSender<Interest>>,
}

impl Registry {
    /// A registry; with `interest`, every first arrival and last departure per target is
    /// reported there, in order.
    pub(crate) fn new(interest: Option<mpsc::UnboundedSender<Interest>>) -> Self {
        Self {
            tables: RwLock::default(),
            next_id: AtomicU64::new(1),
            total: AtomicUsize::new(0),
            interest,
        }
    }

    /// Adds a connection for `targets`; `None` once the registry is closed.
    pub(crate) fn register(&self, sink: Sink, targets: Vec<Target>) -> Option<u64> {
        let mut tables = self.write();
        if tables.closed {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        for target in &targets {
            tables.note_change(self.interest.is_some(), target);
            let slot = tables.by_target.entry(target.clone()).or_default();
            if slot.is_empty() {
                self.report(Interest::Subscribe(target.clone()));
            }
            slot.insert(id, sink.clone());
        }
        tables.connections.insert(id, Entry { sink, targets });
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(id)
    }

    /// Removes a connection; its stream ends once its queue is drained. Idempotent.
    pub(crate) fn unregister(&self, id: u64) {
        let mut tables = self.write();
        if let Some(entry) = tables.connections.remove(&id) {
            self.detach(&mut tables, id, &entry.targets);
        }
    }

    /// Queues `frame` for every connection of `target` and returns how many took it.
    ///
    /// A connection whose queue is full is a slow consumer: it is removed and its HTTP
    /// connection closed, so that it cannot hold memory or slow the others.
    pub(crate) fn deliver(&self, target: &Target, seq: u64, frame: &Bytes) -> usize {
        self.deliver_where(target, seq, frame, |_| true)
    }

    /// Queues `frame` (a comment: no sequence number) for the connections of `target` in
    /// one of `slices` slices of them.
    pub(crate) fn deliver_to_slice(&self, target: &Target, frame: &Bytes, slice: u64, slices: u64) {
        self.deliver_where(target, 0, frame, |id| id % slices == slice);
    }

    fn deliver_where(
        &self,
        target: &Target,
        seq: u64,
        frame: &Bytes,
        included: impl Fn(u64) -> bool,
    ) -> usize {
        let mut delivered = 0;
        let mut overflowed = Vec::new();
        {
            let tables = self.read();
            let Some(slot) = tables.by_target.get(target) else {
                return 0;
            };
            for (&id, sink) in slot.iter().filter(|(id, _)| included(**id)) {
                let queued = Queued {
                    seq,
                    bytes: frame.clone(),
                };
                match sink.tx.try_send(queued) {
                    Ok(()) => delivered += 1,
                    Err(SendError::Full) => overflowed.push(id),
                    // The stream is gone; its guard is removing it.
                    Err(SendError::Closed) => {}
                }
            }
        }
        for id in overflowed {
            tracing::warn!(
                connection = id,
                "closing a connection whose client stopped reading (queue full)"
            );
            self.cut_off(id);
        }
        delivered
    }

    /// A barrier behind every interest change reported so far; `None` when no broker
    /// follows interest (then every registration is in effect at once).
    pub(crate) fn barrier(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let (passed, waiting) = tokio::sync::oneshot::channel();
        self.interest
            .as_ref()?
            .send(Interest::Barrier(Barrier(passed)))
            .ok()?;
        Some(waiting)
    }

    /// Local connections of one target.
    pub(crate) fn count(&self, target: &Target) -> usize {
        self.read().by_target.get(target).map_or(0, HashMap::len)
    }

    /// The users whose connection counts changed since the last call, with their counts now
    /// (0 for users who left); every user with connections when `everyone` is set.
    pub(crate) fn user_counts(&self, everyone: bool) -> Vec<(Arc<str>, usize)> {
        let mut tables = self.write();
        let changed = std::mem::take(&mut tables.changed_users);
        let count = |user: &Arc<str>| {
            tables
                .by_target
                .get(&Target::User(user.clone()))
                .map_or(0, HashMap::len)
        };
        if everyone {
            return tables
                .by_target
                .iter()
                .filter_map(|(target, slot)| match target {
                    Target::User(user) => Some((user.clone(), slot.len())),
                    _ => None,
                })
                .collect();
        }
        changed
            .iter()
            .map(|user| (user.clone(), count(user)))
            .collect()
    }

    /// Users with at least one local connection.
    pub(crate) fn distinct_users(&self) -> usize {
        let tables = self.read();
        tables
            .by_target
            .keys()
            .filter(|target| matches!(target, Target::User(_)))
            .count()
    }

    /// All local connections.
    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Refuses new connections and lets every open stream end once its queue is drained.
    /// Connections that do not drain are left to the server's shutdown deadline.
    pub(crate) fn close(&self) {
        self.write().closed = true;
        self.release_all();
    }

    /// Lets every open stream end once its queue is drained; returns how many there were.
    pub(crate) fn release_all(&self) -> usize {
        let mut tables = self.write();
        let ids: Vec<u64> = tables.connections.keys().copied().collect();
        for &id in &ids {
            if let Some(entry) = tables.connections.remove(&id) {
                self.detach(&mut tables, id, &entry.targets);
            }
        }
        ids.len()
    }

    fn cut_off(&self, id: u64) {
        let mut tables = self.write();
        if let Some(entry) = tables.connections.remove(&id) {
            self.detach(&mut tables, id, &entry.targets);
            if let Some(abort) = &entry.sink.abort {
                abort.cancel();
            }
        }
    }

    fn detach(&self, tables: &mut Tables, id: u64, targets: &[Target]) {
        for target in targets {
            tables.note_change(self.interest.is_some(), target);
            let Some(slot) = tables.by_target.get_mut(target) else {
                continue;
            };
            slot.remove(&id);
            if slot.is_empty() {
                tables.by_target.remove(target);
                self.report(Interest::Unsubscribe(target.clone()));
            }
        }
        self.total.fetch_sub(1, Ordering::Relaxed);
    }

    fn report(&self, change: Interest) {
        if let Some(interest) = &self.interest {
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

/// The handle through which a broker hands events to this instance's connections.
///
/// Each event is encoded once; every recipient gets the same bytes.
#[derive(Clone)]
pub struct Fanout {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

impl Fanout {
    pub(crate) fn new(registry: Arc<Registry>, metrics: Arc<Metrics>) -> Self {
        Self { registry, metrics }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Encodes `event` once and queues it for every local connection of `target`; returns
    /// how many connections it was queued for. `seq` is the event's sequence number (its
    /// [`Position`](crate::Position) within the broker's epoch), or 0 for an event that has
    /// none.
    ///
    /// # Errors
    /// [`Error::InvalidEvent`](crate::Error::InvalidEvent) when the event cannot be encoded;
    /// nothing is delivered then.
    pub fn deliver(&self, target: &Target, seq: u64, event: &crate::Event) -> crate::Result<usize> {
        let frame = crate::encode::event(event)?;
        let recipients = self.registry.deliver(target, seq, &frame);
        self.metrics.delivered(recipients);
        Ok(recipients)
    }

    /// Local connections of `target`.
    pub fn count(&self, target: &Target) -> usize {
        self.registry.count(target)
    }

    /// All local connections.
    pub fn total(&self) -> usize {
        self.registry.total()
    }

    /// Ends every local stream once its queue is drained, so that its client reconnects
    /// and resumes from history; returns how many there were. For a broker that may have
    /// missed events (its subscription was down while others published).
    pub fn release_all(&self) -> usize {
        self.registry.release_all()
    }

    /// Users whose local connection counts changed since the last call, with their counts
    /// now (0 for users who left); with `everyone`, every connected user instead. Tracked
    /// only for brokers that receive [`Interest`].
    pub fn user_counts(&self, everyone: bool) -> Vec<(Arc<str>, usize)> {
        self.registry.user_counts(everyone)
    }
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("connections", &self.registry.total())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(capacity: usize) -> (Sink, queue::Receiver) {
        let (tx, rx) = queue::bounded(capacity);
        (Sink::new(tx, None), rx)
    }

    #[test]
    fn reports_first_arrival_and_last_departure() {
        let (interest_tx, mut interest_rx) = mpsc::unbounded_channel();
        let registry = Registry::new(Some(interest_tx));
        let user = Target::user("u").unwrap();
        let (a, _rx_a) = sink(4);
        let (b, _rx_b) = sink(4);
        let first = registry.register(a, vec![user.clone()]).unwrap();
        let second = registry.register(b, vec![user.clone()]).unwrap();
        registry.unregister(first);
        registry.unregister(first);
        registry.unregister(second);
        let mut changes = Vec::new();
        while let Ok(change) = interest_rx.try_recv() {
            changes.push(change);
        }
        assert!(
            matches!(&changes[..], [Interest::Subscribe(a), Interest::Unsubscribe(b)] if *a == user && *b == user),
            "{changes:?}"
        );
        assert_eq!(registry.total(), 0);
    }

    #[test]
    fn cuts_off_a_full_queue_and_keeps_the_others() {
        let registry = Registry::new(None);
        let all = Target::All;
        let (slow, _slow_rx) = sink(1);
        let (fast, mut fast_rx) = sink(8);
        registry.register(slow, vec![all.clone()]).unwrap();
        registry.register(fast, vec![all.clone()]).unwrap();
        let frame = Bytes::from_static(b"data: x\n\n");
        assert_eq!(registry.deliver(&all, 1, &frame), 2);
        assert_eq!(registry.deliver(&all, 2, &frame), 1);
        assert_eq!(registry.total(), 1);
        assert_eq!(fast_rx.try_recv().unwrap().seq, 1);
        assert_eq!(fast_rx.try_recv().unwrap().bytes, frame);
    }

    #[test]
    fn slices_reach_every_connection_once() {
        let registry = Registry::new(None);
        let mut queues: Vec<_> = (0..40)
            .map(|_| {
                let (sink, rx) = sink(4);
                registry.register(sink, vec![Target::All]).unwrap();
                rx
            })
            .collect();
        let frame = Bytes::from_static(b":\n\n");
        for slice in 0..16 {
            registry.deliver_to_slice(&Target::All, &frame, slice, 16);
        }
        for rx in &mut queues {
            assert!(rx.try_recv().is_some());
            assert!(rx.try_recv().is_none());
        }
    }

    #[test]
    fn refuses_connections_once_closed() {
        let registry = Registry::new(None);
        let (a, mut rx) = sink(1);
        registry.register(a, vec![Target::All]).unwrap();
        registry.close();
        assert_eq!(registry.total(), 0);
        assert!(rx.try_recv().is_none());
        let (b, _rx) = sink(1);
        assert!(registry.register(b, vec![Target::All]).is_none());
    }
}
