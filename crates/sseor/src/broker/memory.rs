//! The embedded broker, for a single instance: events go straight to its connections, and
//! the history lives in its memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::resume::{Loss, Reason, Resume};
use super::{Broker, History, Published, Retention};
use crate::position::{new_epoch, unix_millis};
use crate::{Event, Fanout, Position, Result, Target};

/// The embedded broker: events go straight to this instance's connections, and the last
/// events of every target are kept in memory for clients that resume.
///
/// Positions come from one sequence shared by all targets, in an epoch drawn at start:
/// events reach each connection in the order of their positions, and a restart (which
/// loses the history) changes the epoch, so that an old position is recognized as such.
#[derive(Debug)]
pub struct MemoryBroker {
    fanout: Fanout,
    epoch: String,
    retention: Retention,
    /// Held while an event is numbered, delivered and stored, so that positions reach
    /// clients in order and a history read sees a consistent sequence.
    state: Mutex<State>,
    /// Stream tickets: a lock of their own, so that they never wait for a publish.
    tickets: Mutex<Tickets>,
}

/// Tickets by key, with their deadlines; expired ones are swept as the table grows.
#[derive(Debug, Default)]
struct Tickets {
    kept: HashMap<String, (Instant, String)>,
    /// The table is swept when it reaches this size, then twice what is left.
    sweep_at: usize,
}

/// The smallest table of tickets that is swept.
const TICKETS_SWEPT_FROM: usize = 1024;

#[derive(Debug, Default)]
struct State {
    seq: u64,
    /// When the last event was published (Unix ms).
    ms: u64,
    /// Only targets with at least one event kept: a target whose last event goes is
    /// removed, so that targets published to once hold no memory.
    histories: HashMap<Target, TargetHistory>,
    /// The target of every event kept, by position: the oldest across all targets first,
    /// for eviction by age and by bytes.
    order: BTreeMap<u64, Target>,
    /// What the events kept weigh, as counted by [`weight`].
    bytes: usize,
    /// The highest position of any event dropped from a history that was then removed:
    /// a target without history may have lost events up to there.
    forgotten_through: u64,
}

#[derive(Debug)]
struct TargetHistory {
    events: VecDeque<Stored>,
    /// The highest position trimmed from this history.
    trimmed_through: u64,
}

#[derive(Debug)]
struct Stored {
    seq: u64,
    ms: u64,
    at: Instant,
    /// What this event counts towards the history's byte bound.
    bytes: usize,
    /// The id the publisher gave, kept to recognize a publish that is repeated.
    publisher_id: Option<String>,
    event: Event,
}

/// What an event kept in history counts towards [`Retention::max_bytes`]: its data as
/// JSON, its type and ids, and the bookkeeping around it.
fn weight(event: &Event, publisher_id: Option<&String>) -> usize {
    /// Counts bytes written without keeping them.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut data = Counter(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut data, &event.data);
    data.0
        + event.event_type.len()
        + event.id.as_ref().map_or(0, String::len)
        + publisher_id.map_or(0, String::len)
        + STORED_OVERHEAD
}

/// The bookkeeping of one event kept: its entry, its slot in the order, the positions.
const STORED_OVERHEAD: usize = std::mem::size_of::<Stored>() + 64;

impl State {
    /// The history of `target`, created if needed. A new history starts where forgotten
    /// ones ended: it cannot tell whether the target had events that were dropped.
    fn history_of(&mut self, target: Target) -> &mut TargetHistory {
        let forgotten_through = self.forgotten_through;
        self.histories
            .entry(target)
            .or_insert_with(|| TargetHistory {
                events: VecDeque::new(),
                trimmed_through: forgotten_through,
            })
    }

    fn store(&mut self, target: Target, stored: Stored) {
        self.bytes += stored.bytes;
        self.order.insert(stored.seq, target.clone());
        self.history_of(target).events.push_back(stored);
    }

    /// Drops the oldest event of `target`, and its history when that was the last one.
    fn drop_oldest_of(&mut self, target: &Target) {
        let Some(history) = self.histories.get_mut(target) else {
            return;
        };
        let Some(dropped) = history.events.pop_front() else {
            return;
        };
        history.trimmed_through = dropped.seq;
        let emptied = history.events.is_empty();
        self.order.remove(&dropped.seq);
        self.bytes -= dropped.bytes;
        if emptied {
            self.histories.remove(target);
            self.forgotten_through = self.forgotten_through.max(dropped.seq);
        }
    }

    /// Keeps at most `retention.max_events` events of `target`.
    fn trim_target(&mut self, target: &Target, retention: &Retention) {
        while self
            .histories
            .get(target)
            .is_some_and(|history| history.events.len() > retention.max_events)
        {
            self.drop_oldest_of(target);
        }
    }

    /// Evicts the oldest events across targets while the history weighs more than
    /// `retention.max_bytes` or they are older than `retention.max_age`.
    fn evict(&mut self, retention: &Retention, now: Instant) {
        while let Some((&seq, target)) = self.order.first_key_value() {
            let too_heavy = self.bytes > retention.max_bytes;
            let too_old = self
                .histories
                .get(target)
                .and_then(|history| history.events.front())
                .is_some_and(|oldest| {
                    oldest.seq == seq
                        && now.saturating_duration_since(oldest.at) > retention.max_age
                });
            if !too_heavy && !too_old {
                return;
            }
            let target = target.clone();
            self.drop_oldest_of(&target);
        }
    }
}

impl MemoryBroker {
    /// A broker that delivers to `fanout`, keeping history as `retention` says.
    pub fn new(fanout: Fanout, retention: Retention) -> Self {
        Self {
            fanout,
            epoch: new_epoch(),
            retention,
            state: Mutex::default(),
            tickets: Mutex::default(),
        }
    }

    fn tickets(&self) -> std::sync::MutexGuard<'_, Tickets> {
        self.tickets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the history kept weighs now, in the bytes [`Retention::max_bytes`] bounds.
    #[cfg(test)]
    fn history_bytes(&self) -> usize {
        self.state().bytes
    }

    fn publish_now(&self, target: Target, mut event: Event) -> Result<Published> {
        let mut state = self.state();
        let publisher_id = event.id.take();
        if let Some(id) = &publisher_id
            && let Some(earlier) = state.histories.get(&target).and_then(|history| {
                history
                    .events
                    .iter()
                    .find(|stored| stored.publisher_id.as_ref() == Some(id))
            })
        {
            return Ok(Published {
                id: Position::new(self.epoch.clone(), earlier.ms, earlier.seq).to_string(),
                delivered_locally: Some(0),
                instances: None,
                duplicate: true,
            });
        }
        state.seq += 1;
        let seq = state.seq;
        // Never earlier than the previous event, whatever the wall clock does.
        let ms = unix_millis().max(state.ms);
        state.ms = ms;
        let id = Position::new(self.epoch.clone(), ms, seq).to_string();
        event.id = Some(id.clone());
        let delivered_locally = self.fanout.deliver(&target, seq, &event)?;
        let now = Instant::now();
        let stored = Stored {
            seq,
            ms,
            at: now,
            bytes: weight(&event, publisher_id.as_ref()),
            publisher_id,
            event,
        };
        state.store(target.clone(), stored);
        state.trim_target(&target, &self.retention);
        state.evict(&self.retention, now);
        Ok(Published {
            id,
            delivered_locally: Some(delivered_locally),
            instances: None,
            duplicate: false,
        })
    }

    fn history_now(&self, targets: &[Target], after: Option<&Position>) -> History {
        let mut state = self.state();
        let resume = Resume {
            current: Some(Position::new(self.epoch.clone(), state.ms, state.seq)),
            loss: Loss::Restart,
        };
        let after = match resume.check(after, self.retention.max_age) {
            Ok(after) => after,
            Err(reason) => return resume.reset(reason),
        };
        state.evict(&self.retention, Instant::now());
        let mut missed = Vec::new();
        for target in targets {
            match state.histories.get(target) {
                Some(history) => {
                    if after.seq() < history.trimmed_through {
                        return resume.reset(Reason::TooOld);
                    }
                    missed.extend(
                        history
                            .events
                            .iter()
                            .filter(|stored| stored.seq > after.seq())
                            .map(|stored| (stored.seq, stored.event.clone())),
                    );
                }
                None if after.seq() < state.forgotten_through => {
                    return resume.reset(Reason::TooOld);
                }
                None => {}
            }
        }
        resume.replay(missed)
    }
}

impl Broker for MemoryBroker {
    fn publish(&self, target: Target, event: Event) -> BoxFuture<'_, Result<Published>> {
        let result = self.publish_now(target, event);
        Box::pin(async move { result })
    }

    fn history(&self, targets: Vec<Target>, after: Option<Position>) -> BoxFuture<'_, History> {
        let history = self.history_now(&targets, after.as_ref());
        Box::pin(async move { history })
    }

    fn put_ticket(&self, key: String, value: String, ttl: Duration) -> BoxFuture<'_, Result<()>> {
        let now = Instant::now();
        let mut tickets = self.tickets();
        if tickets.kept.len() >= tickets.sweep_at.max(TICKETS_SWEPT_FROM) {
            tickets.kept.retain(|_, (deadline, _)| *deadline > now);
            tickets.sweep_at = tickets.kept.len() * 2;
        }
        tickets.kept.insert(key, (now + ttl, value));
        Box::pin(async { Ok(()) })
    }

    fn take_ticket(&self, key: String) -> BoxFuture<'_, Result<Option<String>>> {
        let taken = self.tickets().kept.remove(&key);
        let value = taken
            .filter(|(deadline, _)| *deadline > Instant::now())
            .map(|(_, value)| value);
        Box::pin(async move { Ok(value) })
    }
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;

    const BOUND: usize = 64 * 1024;

    fn broker(max_bytes: usize) -> MemoryBroker {
        let retention = Retention {
            max_bytes,
            ..Retention::default()
        };
        MemoryBroker::new(Fanout::standalone(), retention)
    }

    /// An event of about 2 KiB.
    fn padded(n: usize) -> Event {
        Event::new("n").with_data(json!({ "n": n, "padding": "x".repeat(2048) }))
    }

    fn user(n: usize) -> Target {
        Target::user(&format!("user{n}")).unwrap()
    }

    fn position(broker: &MemoryBroker, target: Target, event: Event) -> Position {
        broker
            .publish_now(target, event)
            .unwrap()
            .id
            .parse()
            .unwrap()
    }

    fn replayed(history: &History) -> Vec<u64> {
        match history {
            History::Events { events, .. } => events.iter().map(|(seq, _)| *seq).collect(),
            History::Reset { reason, .. } => panic!("expected a replay, got a reset: {reason}"),
        }
    }

    #[test]
    fn history_across_many_targets_stays_within_its_byte_bound() {
        let broker = broker(BOUND);
        let mut positions = Vec::new();
        for n in 0..1000 {
            positions.push(position(&broker, user(n), padded(n)));
            assert!(
                broker.history_bytes() <= BOUND,
                "{} bytes kept after {n} publishes",
                broker.history_bytes()
            );
        }
        // Most of 1,000 targets lost their only event: their histories are gone too.
        let state = broker.state();
        assert!(state.histories.len() < 40, "{}", state.histories.len());
        assert_eq!(state.histories.len(), state.order.len());
        assert!(state.bytes > BOUND / 2, "oldest first, not everything");
    }

    #[test]
    fn a_resume_past_evicted_events_is_a_reset_and_one_within_replays() {
        let broker = broker(BOUND);
        let first = position(&broker, user(0), padded(0));
        let second = position(&broker, user(0), padded(1));
        // Others' events push user0's out of the bound.
        for n in 1..200 {
            position(&broker, user(n), padded(n));
        }
        let kept = position(&broker, user(0), padded(2));
        let last = position(&broker, user(0), padded(3));

        let history = broker.history_now(&[user(0)], Some(&first));
        assert!(
            matches!(history, History::Reset { .. }),
            "event {} was evicted: {history:?}",
            second.seq()
        );
        assert_eq!(
            replayed(&broker.history_now(&[user(0)], Some(&kept))),
            [last.seq()]
        );
        // A target with no history left cannot prove it lost nothing since then either.
        assert!(matches!(
            broker.history_now(&[user(1)], Some(&first)),
            History::Reset { .. }
        ));
    }

    #[test]
    fn eviction_by_bytes_takes_the_oldest_events_first() {
        let broker = broker(BOUND);
        let start = position(&broker, user(0), padded(0));
        for n in 1..100 {
            position(&broker, user(n % 3), padded(n));
        }
        let state = broker.state();
        let oldest_kept = *state.order.keys().next().unwrap();
        assert_eq!(
            state.order.keys().copied().collect::<Vec<_>>(),
            (oldest_kept..=start.seq() + 99).collect::<Vec<_>>(),
            "a contiguous run of the newest events is kept"
        );
    }

    #[test]
    fn per_target_trims_keep_the_byte_count_exact() {
        let retention = Retention {
            max_events: 3,
            ..Retention::default()
        };
        let broker = MemoryBroker::new(Fanout::standalone(), retention);
        for n in 0..10 {
            position(&broker, user(n % 2), padded(n));
        }
        let state = broker.state();
        let counted: usize = state
            .histories
            .values()
            .flat_map(|history| history.events.iter().map(|stored| stored.bytes))
            .sum();
        assert_eq!(state.bytes, counted);
        assert_eq!(state.order.len(), 6);
    }
}
