//! The embedded broker, for a single instance: events go straight to its connections, and
//! the history lives in its memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::resume::{self, Loss, Need};
use super::{Broker, History, Published, Replayed, Retention};
use crate::fanout::Encoded;
use crate::position::new_epoch;
use crate::{Event, Fanout, Position, Result, Target};

/// The embedded broker: events go straight to this instance's connections, and the last
/// events of every target are kept in memory for clients that resume.
///
/// Each target numbers its events in an epoch drawn when its sequence starts: a restart
/// (which loses the history) starts every sequence anew, so that an old position is
/// recognized as such.
#[derive(Debug)]
pub struct MemoryBroker {
    fanout: Fanout,
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

/// How often sequences that outlived their lifetime are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct State {
    /// Every target published to, until its sequence outlives its last event by
    /// [`Retention::sequence_lifetime`] with no history left.
    sequences: HashMap<Target, Sequence>,
    /// The target of every event kept, by the order of publishing: the oldest across all
    /// targets first, for eviction by age and by bytes, and for replays in order.
    order: BTreeMap<u64, Target>,
    /// The order of the last event published.
    published: u64,
    /// What the events kept weigh, as counted by [`weight`].
    bytes: usize,
    swept_at: Option<Instant>,
}

#[derive(Debug)]
struct Sequence {
    epoch: u32,
    seq: u64,
    last_published: Instant,
    events: VecDeque<Stored>,
}

impl Sequence {
    fn position(&self) -> Position {
        Position::new(self.epoch, self.seq)
    }
}

#[derive(Debug)]
struct Stored {
    seq: u64,
    /// Its place in the order of publishing across targets.
    order: u64,
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
    data.0 + event.event_type.len() + publisher_id.map_or(0, String::len) + STORED_OVERHEAD
}

/// The bookkeeping of one event kept: its entry, its slot in the order.
const STORED_OVERHEAD: usize = std::mem::size_of::<Stored>() + 64;

impl State {
    /// Where `target` stands: epoch 0 when it has no sequence.
    fn position(&self, target: &Target) -> Position {
        self.sequences
            .get(target)
            .map(Sequence::position)
            .unwrap_or_default()
    }

    /// The sequence of `target`, started in a new epoch if it has none.
    fn sequence(&mut self, target: Target, now: Instant) -> &mut Sequence {
        self.sequences.entry(target).or_insert_with(|| Sequence {
            epoch: new_epoch(),
            seq: 0,
            last_published: now,
            events: VecDeque::new(),
        })
    }

    /// The position of the event `publisher_id` names, when `target`'s history holds it.
    fn earlier(&self, target: &Target, publisher_id: &str) -> Option<Position> {
        let sequence = self.sequences.get(target)?;
        sequence
            .events
            .iter()
            .find(|stored| stored.publisher_id.as_deref() == Some(publisher_id))
            .map(|stored| Position::new(sequence.epoch, stored.seq))
    }

    fn store(&mut self, target: Target, stored: Stored) {
        self.bytes += stored.bytes;
        self.order.insert(stored.order, target.clone());
        if let Some(sequence) = self.sequences.get_mut(&target) {
            sequence.events.push_back(stored);
        }
    }

    /// Drops the oldest event of `target`.
    fn drop_oldest_of(&mut self, target: &Target) {
        let Some(dropped) = self
            .sequences
            .get_mut(target)
            .and_then(|sequence| sequence.events.pop_front())
        else {
            return;
        };
        self.order.remove(&dropped.order);
        self.bytes -= dropped.bytes;
    }

    /// Keeps at most `retention.max_events` events of `target`.
    fn trim_target(&mut self, target: &Target, retention: &Retention) {
        while self
            .sequences
            .get(target)
            .is_some_and(|sequence| sequence.events.len() > retention.max_events)
        {
            self.drop_oldest_of(target);
        }
    }

    /// Evicts the oldest events across targets while the history weighs more than
    /// `retention.max_bytes` or they are older than `retention.max_age`.
    fn evict(&mut self, retention: &Retention, now: Instant) {
        while let Some((&order, target)) = self.order.first_key_value() {
            let too_heavy = self.bytes > retention.max_bytes;
            let too_old = self
                .sequences
                .get(target)
                .and_then(|sequence| sequence.events.front())
                .is_some_and(|oldest| {
                    oldest.order == order
                        && now.saturating_duration_since(oldest.at) > retention.max_age
                });
            if !too_heavy && !too_old {
                return;
            }
            let target = target.clone();
            self.drop_oldest_of(&target);
        }
    }

    /// Forgets the sequences with no history left whose last event is older than their
    /// lifetime, once a minute: targets published to once hold no memory for long.
    fn sweep(&mut self, retention: &Retention, now: Instant) {
        if self
            .swept_at
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.swept_at = Some(now);
        let lifetime = retention.sequence_lifetime();
        self.sequences.retain(|_, sequence| {
            !sequence.events.is_empty()
                || now.saturating_duration_since(sequence.last_published) <= lifetime
        });
    }

    /// What a stream needs that starts in each target at the position given (see
    /// [`Broker::resume`]); the caller evicted what outlived the retention.
    fn resume(&self, from: &[(Target, Option<Position>)]) -> History {
        let positions: Vec<(Target, Position)> = from
            .iter()
            .map(|(target, _)| (target.clone(), self.position(target)))
            .collect();
        let mut missed = Vec::new();
        for ((target, after), (_, now)) in from.iter().zip(&positions) {
            let read = match resume::need(*after, *now, Loss::Restart) {
                Need::Nothing => Ok(()),
                Need::From(first) => self.events_from(target, first, &mut missed),
                Need::Reset(reason) => Err(reason),
            };
            if let Err(reason) = read {
                return reason.reset(positions);
            }
        }
        History::Events {
            events: resume::in_order(missed),
            positions,
        }
    }

    /// The position just before the oldest event `target`'s history holds: a resume from
    /// there replays all of it. `None` when the target has no history.
    fn before_oldest(&self, target: &Target) -> Option<Position> {
        let sequence = self.sequences.get(target)?;
        let oldest = sequence.events.front()?;
        Some(Position::new(sequence.epoch, oldest.seq - 1))
    }

    /// The events of `target` from `from` on, each with its order of publishing; a reset
    /// when the history no longer holds `from`.
    fn events_from(
        &self,
        target: &Target,
        from: u64,
        out: &mut Vec<Vec<(u64, Replayed)>>,
    ) -> std::result::Result<(), resume::Reason> {
        let Some(sequence) = self.sequences.get(target) else {
            return Ok(());
        };
        let first_kept = sequence.events.front().map(|stored| stored.seq);
        resume::complete(first_kept, from, sequence.seq)?;
        out.push(
            sequence
                .events
                .iter()
                .filter(|stored| stored.seq >= from)
                .map(|stored| {
                    let position = Position::new(sequence.epoch, stored.seq);
                    let replayed = (target.clone(), position, stored.event.clone());
                    (stored.order, replayed)
                })
                .collect(),
        );
        Ok(())
    }
}

impl MemoryBroker {
    /// A broker that delivers to `fanout`, keeping history as `retention` says.
    pub fn new(fanout: Fanout, retention: Retention) -> Self {
        Self {
            fanout,
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
        let publisher_id = event.id.take();
        if event.transient {
            let delivered = self.fanout.deliver(&target, None, &event)?;
            return Ok(Published {
                id: None,
                delivered_locally: Some(delivered),
                instances: None,
                duplicate: false,
            });
        }
        // Encoded before the lock, which numbers and delivers events in one order.
        let encoded = Encoded::new(&event)?;
        let mut state = self.state();
        if let Some(earlier) = publisher_id
            .as_deref()
            .and_then(|id| state.earlier(&target, id))
        {
            return Ok(Published {
                id: Some(earlier.to_string()),
                delivered_locally: Some(0),
                instances: None,
                duplicate: true,
            });
        }
        let now = Instant::now();
        let sequence = state.sequence(target.clone(), now);
        sequence.seq += 1;
        sequence.last_published = now;
        let position = sequence.position();
        let delivered_locally = self
            .fanout
            .deliver_encoded(&target, Some(position), encoded);
        state.published += 1;
        let stored = Stored {
            seq: position.seq(),
            order: state.published,
            at: now,
            bytes: weight(&event, publisher_id.as_ref()),
            publisher_id,
            event,
        };
        state.store(target.clone(), stored);
        state.trim_target(&target, &self.retention);
        state.evict(&self.retention, now);
        state.sweep(&self.retention, now);
        Ok(Published {
            id: Some(position.to_string()),
            delivered_locally: Some(delivered_locally),
            instances: None,
            duplicate: false,
        })
    }

    fn resume_now(&self, from: &[(Target, Option<Position>)]) -> History {
        let mut state = self.state();
        state.evict(&self.retention, Instant::now());
        state.resume(from)
    }
}

impl Broker for MemoryBroker {
    fn publish(&self, target: Target, event: Event) -> BoxFuture<'_, Result<Published>> {
        let result = self.publish_now(target, event);
        Box::pin(async move { result })
    }

    fn resume(&self, from: Vec<(Target, Option<Position>)>) -> BoxFuture<'_, History> {
        let history = self.resume_now(&from);
        Box::pin(async move { history })
    }

    fn history(&self, target: Target, after: Option<Position>) -> BoxFuture<'_, Result<History>> {
        // One lock for both steps: what is kept cannot be evicted in between.
        let mut state = self.state();
        state.evict(&self.retention, Instant::now());
        let after = after.or_else(|| state.before_oldest(&target));
        let history = state.resume(&[(target, after)]);
        Box::pin(async move { Ok(history) })
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
            .unwrap()
            .parse()
            .unwrap()
    }

    fn resume(broker: &MemoryBroker, target: Target, after: Position) -> History {
        broker.resume_now(&[(target, Some(after))])
    }

    fn replayed(history: &History) -> Vec<u64> {
        match history {
            History::Events { events, .. } => events.iter().map(|(_, p, _)| p.seq()).collect(),
            History::Reset { reason, .. } => panic!("expected a replay, got a reset: {reason}"),
        }
    }

    #[test]
    fn history_across_many_targets_stays_within_its_byte_bound() {
        let broker = broker(BOUND);
        for n in 0..1000 {
            position(&broker, user(n), padded(n));
            assert!(
                broker.history_bytes() <= BOUND,
                "{} bytes kept after {n} publishes",
                broker.history_bytes()
            );
        }
        let state = broker.state();
        let kept: usize = state.sequences.values().map(|s| s.events.len()).sum();
        assert!(kept < 40, "{kept}");
        assert_eq!(kept, state.order.len());
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
        let history = resume(&broker, user(0), first);
        assert!(
            matches!(history, History::Reset { .. }),
            "event {} was evicted: {history:?}",
            second.seq()
        );
        assert_eq!(replayed(&resume(&broker, user(0), kept)), [last.seq()]);
        // A target whose history was evicted whole cannot replay what it lost either.
        let user1 = Position::new(broker.state().position(&user(1)).epoch(), 0);
        assert!(matches!(
            resume(&broker, user(1), user1),
            History::Reset { .. }
        ));
    }

    #[test]
    fn each_target_numbers_its_own_events() {
        let broker = broker(BOUND);
        let a = [0, 1, 2].map(|n| position(&broker, user(0), padded(n)));
        let b = position(&broker, user(1), padded(3));
        assert_eq!(a.map(Position::seq), [1, 2, 3]);
        assert_eq!(b.seq(), 1);
        assert!(a.iter().all(|p| p.epoch() == a[0].epoch()));
    }

    #[test]
    fn a_replay_across_targets_is_in_the_order_of_publishing() {
        let broker = broker(1 << 20);
        let start = [user(0), user(1)].map(|t| (t.clone(), Some(broker.state().position(&t))));
        for n in 0..6 {
            position(&broker, user(n % 2), padded(n));
        }
        let History::Events { events, .. } = broker.resume_now(&start) else {
            panic!("a replay");
        };
        let ns: Vec<_> = events.iter().map(|(_, _, e)| e.data["n"].clone()).collect();
        assert_eq!(ns, (0..6).map(|n| json!(n)).collect::<Vec<_>>());
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
            .sequences
            .values()
            .flat_map(|sequence| sequence.events.iter().map(|stored| stored.bytes))
            .sum();
        assert_eq!(state.bytes, counted);
        assert_eq!(state.order.len(), 6);
    }

    #[test]
    fn a_transient_event_is_neither_numbered_nor_kept() {
        let broker = broker(BOUND);
        let published = broker
            .publish_now(user(0), Event::new("typing").transient())
            .unwrap();
        assert_eq!(published.id, None);
        assert_eq!(broker.state().position(&user(0)), Position::default());
        assert_eq!(broker.history_bytes(), 0);
    }
}
