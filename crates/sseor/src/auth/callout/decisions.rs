//! The application's recent decisions, by credential: kept a short time and bounded in
//! number, so that a reconnect storm is not a login storm; and the callouts under way, so
//! that identical requests at once share one.
//!
//! A credential is known only by a digest of what was forwarded and asked: no cookie or
//! token is kept in memory as text, nor ever logged.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::time::Instant;

use super::endpoint::Failure;
use super::wire::Decision;

/// A credential and what it asks, as a SHA-256 digest.
pub(super) type Key = [u8; 32];

/// How long decisions are kept.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lifetimes {
    /// A grant (at most until it expires).
    pub(super) grant: Duration,
    /// A refusal.
    pub(super) refusal: Duration,
}

impl Lifetimes {
    /// How long `decision` may be reused; `None` for a failure, which is never kept.
    fn of(&self, decision: &Decision) -> Option<Duration> {
        let kept = match decision {
            Decision::Granted(grant) => match grant.expires_at() {
                Some(at) => {
                    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                    self.grant.min(left)
                }
                None => self.grant,
            },
            Decision::Refused { .. } => self.refusal,
            Decision::Failed(_) => return None,
        };
        (!kept.is_zero()).then_some(kept)
    }
}

/// A callout under way, which every request for the same key awaits.
type Pending = Shared<BoxFuture<'static, Decision>>;

/// Recent decisions and the callouts under way.
pub(super) struct Decisions {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    kept: HashMap<Key, Kept>,
    /// The keys in the order they were kept, with the serial of that keeping: the oldest
    /// go first when the capacity is reached.
    order: VecDeque<(Key, u64)>,
    serial: u64,
    pending: HashMap<Key, Pending>,
}

struct Kept {
    decision: Decision,
    until: Instant,
    serial: u64,
}

impl Decisions {
    /// Room for `capacity` decisions.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    /// The decision for `key`: a recent one, the one under way, or the one `ask` gets.
    ///
    /// `ask` runs in a task of its own, so that it completes (within its timeout) and its
    /// decision is kept even when every request waiting for it is gone.
    pub(super) async fn decide(
        self: &Arc<Self>,
        key: Key,
        lifetimes: Lifetimes,
        ask: impl FnOnce() -> BoxFuture<'static, Decision>,
    ) -> Decision {
        let pending = {
            let mut state = self.lock();
            if let Some(decision) = state.recent(&key) {
                return decision;
            }
            state
                .pending
                .entry(key)
                .or_insert_with(|| self.start(key, lifetimes, ask()))
                .clone()
        };
        pending.await
    }

    fn start(
        self: &Arc<Self>,
        key: Key,
        lifetimes: Lifetimes,
        ask: BoxFuture<'static, Decision>,
    ) -> Pending {
        let decisions = Arc::clone(self);
        let task = tokio::spawn(async move {
            let decision = ask.await;
            decisions.settle(key, &decision, lifetimes);
            decision
        });
        async move {
            task.await.unwrap_or_else(|_| {
                Decision::Failed(Failure::Unreachable("the callout task ended early".into()))
            })
        }
        .boxed()
        .shared()
    }

    /// Records the decision of a callout that ended.
    fn settle(&self, key: Key, decision: &Decision, lifetimes: Lifetimes) {
        let mut state = self.lock();
        state.pending.remove(&key);
        if let Some(kept) = lifetimes.of(decision) {
            state.keep(key, decision.clone(), Instant::now() + kept, self.capacity);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many decisions are kept now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.lock().kept.len()
    }
}

impl State {
    /// The decision kept for `key`, while it is fresh.
    fn recent(&self, key: &Key) -> Option<Decision> {
        self.kept
            .get(key)
            .filter(|kept| kept.until > Instant::now())
            .map(|kept| kept.decision.clone())
    }

    fn keep(&mut self, key: Key, decision: Decision, until: Instant, capacity: usize) {
        if capacity == 0 {
            return;
        }
        self.serial += 1;
        let serial = self.serial;
        self.kept.insert(
            key,
            Kept {
                decision,
                until,
                serial,
            },
        );
        self.order.push_back((key, serial));
        let now = Instant::now();
        while let Some(&(oldest, serial)) = self.order.front() {
            let current = self.kept.get(&oldest).filter(|kept| kept.serial == serial);
            let over = self.kept.len() > capacity;
            match current {
                // Replaced by a later decision for the same key: only the entry goes.
                None => {}
                Some(kept) if over || kept.until <= now => {
                    self.kept.remove(&oldest);
                }
                Some(_) => break,
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::auth::Grant;

    const LONG: Lifetimes = Lifetimes {
        grant: Duration::from_secs(60),
        refusal: Duration::from_secs(60),
    };

    fn granted() -> Decision {
        Decision::Granted(Grant::user("alice").unwrap())
    }

    /// An `ask` that counts its calls and answers `decision` after `delay`.
    fn counted(
        calls: &Arc<AtomicUsize>,
        decision: Decision,
        delay: Duration,
    ) -> impl FnOnce() -> BoxFuture<'static, Decision> {
        let calls = Arc::clone(calls);
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(delay).await;
                decision
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn identical_requests_at_once_share_one_callout() {
        let decisions = Arc::new(Decisions::new(10));
        let calls = Arc::new(AtomicUsize::new(0));
        let waiting = (0..20).map(|_| {
            decisions.decide(
                [1; 32],
                LONG,
                counted(&calls, granted(), Duration::from_millis(50)),
            )
        });
        let all = futures_util::future::join_all(waiting).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(all.iter().all(|d| matches!(d, Decision::Granted(_))));
        decisions
            .decide([1; 32], LONG, counted(&calls, granted(), Duration::ZERO))
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "kept, not asked again");
    }

    #[tokio::test]
    async fn failures_are_not_kept_and_a_callout_outlives_its_waiters() {
        let decisions = Arc::new(Decisions::new(10));
        let calls = Arc::new(AtomicUsize::new(0));
        let failed = Decision::Failed(Failure::TimedOut(Duration::ZERO));
        decisions
            .decide([2; 32], LONG, counted(&calls, failed, Duration::ZERO))
            .await;
        assert_eq!(decisions.kept(), 0);
        // The only waiter gives up; the callout still ends and its decision is kept.
        let abandoned = decisions.decide(
            [3; 32],
            LONG,
            counted(&calls, granted(), Duration::from_millis(30)),
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(1), abandoned)
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(decisions.kept(), 1);
        assert!(decisions.lock().pending.is_empty());
    }

    #[tokio::test]
    async fn the_oldest_decisions_go_first_beyond_the_capacity() {
        let decisions = Arc::new(Decisions::new(3));
        let calls = Arc::new(AtomicUsize::new(0));
        for key in 0..5u8 {
            decisions
                .decide([key; 32], LONG, counted(&calls, granted(), Duration::ZERO))
                .await;
        }
        assert_eq!(decisions.kept(), 3);
        let state = decisions.lock();
        assert!(state.recent(&[4; 32]).is_some() && state.recent(&[0; 32]).is_none());
    }

    #[tokio::test]
    async fn a_grant_is_kept_no_longer_than_it_is_valid_and_zero_keeps_nothing() {
        let soon = SystemTime::now() + Duration::from_millis(500);
        let expiring = Decision::Granted(Grant::user("alice").unwrap().expiring_at(soon));
        let kept = LONG.of(&expiring).unwrap();
        assert!(kept <= Duration::from_millis(500), "{kept:?}");
        let none = Lifetimes {
            grant: Duration::ZERO,
            refusal: Duration::ZERO,
        };
        assert_eq!(none.of(&granted()), None);
    }
}
