//! The lifecycle task: this instance's first arrival and last departure of each user and
//! topic, a departure counted only once the grace period has passed without a return,
//! recorded through the broker, which tells which of them are changes across every
//! instance; those are reported to the [`Lifecycle`] hooks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::fanout::registry::Registry;
use crate::{Lifecycle, LifecycleHooks, Occupancy, Target};

/// How long the task waits before recording again what the broker refused (Redis down).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The running lifecycle task of a manager, when it has hooks.
pub(super) struct Transitions {
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Transitions {
    /// Starts following `registry` for `hooks`, recording through `broker`; `None` when
    /// no hook listens (then nothing about lifecycles is kept anywhere).
    pub(super) fn start(
        registry: &Registry,
        broker: &Arc<dyn Broker>,
        hooks: &LifecycleHooks,
    ) -> Option<Arc<Self>> {
        if !hooks.is_heard() {
            return None;
        }
        let tracker = Tracker {
            broker: Arc::downgrade(broker),
            grace: hooks.grace(),
            hooks: hooks.clone(),
            changes: registry.follow_occupancy(),
            held: HashMap::new(),
            leaving: VecDeque::new(),
            recorded: HashSet::new(),
            dirty: HashSet::new(),
            retry_at: None,
            spans_instances: true,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(tracker.run(stop.clone()));
        Some(Arc::new(Self {
            stop,
            task: Mutex::new(Some(task)),
        }))
    }

    /// Stops the task, once the streams are drained. On a broker that spans no other
    /// instance, every user and topic this instance still holds departs now: no other
    /// instance will tell. A broker that spans instances hands them over instead (on
    /// Redis, a survivor reports those that did not come back elsewhere).
    pub(super) async fn finish(&self) {
        self.stop.cancel();
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

struct Tracker {
    /// Weak: the task must not keep a manager that was dropped without closing alive.
    broker: Weak<dyn Broker>,
    hooks: LifecycleHooks,
    grace: Duration,
    changes: mpsc::UnboundedReceiver<Occupancy>,
    /// The users and topics this instance holds: with streams (`None`), or whose last
    /// stream left, until the deadline of its grace.
    held: HashMap<Target, Option<Instant>>,
    /// The departures waiting out their grace, by deadline (the grace is the same for all).
    leaving: VecDeque<(Instant, Target)>,
    /// What the broker recorded this instance as holding.
    recorded: HashSet<Target>,
    /// Targets whose holding may differ from what the broker recorded.
    dirty: HashSet<Target>,
    /// When to record again after the broker failed.
    retry_at: Option<Instant>,
    /// Whether the broker spans other instances (it said otherwise: every change is one).
    spans_instances: bool,
}

impl Tracker {
    async fn run(mut self, stop: CancellationToken) {
        loop {
            let wake = [self.leaving.front().map(|(at, _)| *at), self.retry_at]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                biased;
                () = stop.cancelled() => return self.finish(),
                change = self.changes.recv() => match change {
                    Some(change) => self.apply(change),
                    None => return,
                },
                () = sleep_until(wake) => {}
            }
            while let Ok(change) = self.changes.try_recv() {
                self.apply(change);
            }
            let now = Instant::now();
            self.expire(now);
            if self.retry_at.is_none_or(|at| at <= now) && !self.record().await {
                return;
            }
        }
    }

    fn apply(&mut self, change: Occupancy) {
        let Occupancy {
            target, occupied, ..
        } = change;
        if occupied {
            self.held.insert(target.clone(), None);
            self.dirty.insert(target);
        } else if self.grace.is_zero() {
            self.held.remove(&target);
            self.dirty.insert(target);
        } else {
            let deadline = Instant::now() + self.grace;
            self.held.insert(target.clone(), Some(deadline));
            self.leaving.push_back((deadline, target));
        }
    }

    /// Departures whose grace ended by `now` without a return.
    fn expire(&mut self, now: Instant) {
        while let Some((deadline, _)) = self.leaving.front()
            && *deadline <= now
        {
            let Some((deadline, target)) = self.leaving.pop_front() else {
                break;
            };
            // Not when the target came back (and perhaps left again, with a later deadline).
            if self.held.get(&target) == Some(&Some(deadline)) {
                self.held.remove(&target);
                self.dirty.insert(target);
            }
        }
    }

    /// Records what changed through the broker and reports what it says are changes
    /// across every instance; false once the broker is gone.
    async fn record(&mut self) -> bool {
        let changes: Vec<Occupancy> = self
            .dirty
            .drain()
            .filter_map(|target| {
                let holds = self.held.contains_key(&target);
                (holds != self.recorded.contains(&target)).then(|| Occupancy::new(target, holds))
            })
            .collect();
        if changes.is_empty() {
            return true;
        }
        let Some(broker) = self.broker.upgrade() else {
            return false;
        };
        match broker.occupancy(changes.clone()).await {
            Ok(firsts) => {
                self.retry_at = None;
                self.spans_instances = firsts.is_some();
                for (index, change) in changes.into_iter().enumerate() {
                    let first = firsts
                        .as_ref()
                        .is_none_or(|firsts| firsts.get(index) == Some(&true));
                    self.settle(change, first);
                }
            }
            Err(e) => {
                if self.retry_at.is_none() {
                    tracing::warn!(error = %e, "lifecycle changes not recorded; retrying");
                }
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
                self.dirty
                    .extend(changes.into_iter().map(|change| change.target));
            }
        }
        true
    }

    /// Notes that the broker recorded `change`, and reports it when it was `first`.
    fn settle(&mut self, change: Occupancy, first: bool) {
        if change.occupied {
            self.recorded.insert(change.target.clone());
        } else {
            self.recorded.remove(&change.target);
        }
        if let (true, Some(lifecycle)) = (first, Lifecycle::of(&change)) {
            self.hooks.report(&lifecycle);
        }
    }

    /// At shutdown, with a broker that spans no other instance: everything held departs.
    fn finish(mut self) {
        if self.spans_instances {
            return;
        }
        for target in std::mem::take(&mut self.recorded) {
            self.settle(Occupancy::new(target, false), true);
        }
    }
}

/// Sleeps until `deadline`; for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
