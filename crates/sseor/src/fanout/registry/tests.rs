//! The registry's unit tests: interest reported, slow streams cut off, slices, closing
//! and limits.

use super::*;
use crate::SlowConsumer;
use bytes::Bytes;

fn registry(limits: Limits) -> Arc<Registry> {
    Arc::new(Registry::new(limits, Arc::default()))
}

fn sink(capacity: usize) -> (Sink, queue::Receiver) {
    let (tx, rx) = queue::bounded(queue::Bounds {
        events: capacity,
        bytes: 1 << 20,
        policy: SlowConsumer::Disconnect,
    });
    (Sink::new(tx, None), rx)
}

fn opening(sink: Sink, targets: Vec<Target>) -> Opening {
    Opening {
        sink,
        targets,
        client_ip: None,
    }
}

fn frame(seq: u64) -> Queued {
    Arc::new(queue::Frame {
        stamp: Some(queue::Stamp::Event(
            Target::All,
            crate::Position::new(1, seq),
        )),
        bytes: Bytes::from_static(b"data: x\n\n"),
        kind: None,
    })
}

#[test]
fn reports_first_arrival_and_last_departure() {
    let registry = registry(Limits::default());
    let mut interest_rx = registry.follow_interest();
    let user = Target::user("u").unwrap();
    let (a, _rx_a) = sink(4);
    let (b, _rx_b) = sink(4);
    let first = registry.register(opening(a, vec![user.clone()])).unwrap();
    let second = registry.register(opening(b, vec![user.clone()])).unwrap();
    // Let go twice (an expiry, then the client leaving): reported once.
    registry.unregister(first.id());
    drop(first);
    drop(second);
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
    let registry = registry(Limits::default());
    let all = Target::All;
    let (slow, _slow_rx) = sink(1);
    let (fast, mut fast_rx) = sink(8);
    let _slow = registry.register(opening(slow, vec![all.clone()])).unwrap();
    let _fast = registry.register(opening(fast, vec![all.clone()])).unwrap();
    assert_eq!(registry.deliver(&all, &frame(1)), 2);
    assert_eq!(registry.deliver(&all, &frame(2)), 1);
    assert_eq!(registry.total(), 1);
    assert_eq!(fast_rx.try_recv().unwrap().seq(), 1);
    assert_eq!(fast_rx.try_recv().unwrap().bytes, frame(2).bytes);
}

#[test]
fn slices_reach_every_connection_once() {
    let registry = registry(Limits::default());
    let mut queues: Vec<_> = (0..40)
        .map(|_| {
            let (sink, rx) = sink(4);
            let registered = registry.register(opening(sink, vec![Target::All])).unwrap();
            (registered, rx)
        })
        .collect();
    let frame = queue::Frame::plain(Bytes::from_static(b":\n\n"));
    for slice in 0..16 {
        let since = registry.clock_ms();
        let checks: Vec<_> = (registry.slice_of(&Target::All, slice, 16).into_iter())
            .map(|id| (id, since))
            .collect();
        let mut active = Vec::new();
        assert_eq!(
            registry.silent(&Target::All, &checks, &mut active).len(),
            checks.len()
        );
        assert!(active.is_empty());
        registry.heartbeat(&Target::All, &checks, &frame);
    }
    for (_, rx) in &mut queues {
        assert!(rx.try_recv().is_some());
        assert!(rx.try_recv().is_none());
    }
}

#[test]
fn a_stream_that_carried_an_event_since_gets_no_heartbeat_and_says_when() {
    let registry = registry(Limits::default());
    let (quiet, mut quiet_rx) = sink(4);
    let (busy, mut busy_rx) = sink(4);
    let quiet = registry
        .register(opening(quiet, vec![Target::All]))
        .unwrap();
    let bo = Target::user("bo").unwrap();
    let busy = registry
        .register(opening(busy, vec![Target::All, bo.clone()]))
        .unwrap();
    let since = registry.clock_ms();
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(registry.deliver(&bo, &frame(1)), 1);
    let sent_at = registry.clock_ms();
    assert_eq!(busy_rx.try_recv().unwrap().seq(), 1);
    let heartbeat = queue::Frame::plain(Bytes::from_static(b":\n\n"));
    let checks = [
        (quiet.id(), since),
        (busy.id(), since),
        (busy.id() + 100, since),
    ];
    let mut active = Vec::new();
    let silent = registry.silent(&Target::All, &checks, &mut active);
    assert_eq!(silent, [0], "only the quiet stream is silent");
    assert!(quiet_rx.try_recv().is_none(), "asking sends nothing");
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].0, 1, "the busy stream's place in the checks");
    assert!(
        active[0].1 >= since + 5 && active[0].1 <= sent_at,
        "{active:?}"
    );
    registry.heartbeat(&Target::All, &checks, &heartbeat);
    assert!(quiet_rx.try_recv().is_some());
    assert!(busy_rx.try_recv().is_none(), "it carried an event since");
}

#[test]
fn refuses_connections_once_closed_and_releases_in_batches() {
    let registry = registry(Limits::default());
    let mut queues: Vec<_> = (0..5)
        .map(|_| {
            let (sink, rx) = sink(1);
            let registered = registry.register(opening(sink, vec![Target::All])).unwrap();
            (registered, rx)
        })
        .collect();
    registry.close();
    let (late, _rx) = sink(1);
    assert_eq!(
        registry.register(opening(late, vec![Target::All])).err(),
        Some(Refused::Closed)
    );
    assert_eq!(registry.release_some(2, CloseReason::Drained), 2);
    assert_eq!(registry.total(), 3);
    assert_eq!(registry.release_all(CloseReason::Drained), 3);
    assert_eq!(registry.total(), 0);
    for (_, rx) in &mut queues {
        assert!(rx.try_recv().is_none());
    }
}

#[test]
fn limits_refuse_the_stream_over_them_and_free_up_when_one_leaves() {
    let limits = Limits {
        total: 5,
        per_user: 2,
        per_ip: 3,
    };
    let registry = registry(limits);
    let open = |user: &str, ip: [u8; 4]| {
        let (sink, rx) = sink(1);
        let targets = vec![Target::user(user).unwrap(), Target::All];
        let opened = registry.register(Opening {
            sink,
            targets,
            client_ip: Some(IpAddr::from(ip)),
        });
        (opened, rx)
    };
    let a1 = open("a", [10, 0, 0, 1]).0.unwrap();
    let _a2 = open("a", [10, 0, 0, 2]).0.unwrap();
    assert_eq!(
        open("a", [10, 0, 0, 3]).0.err(),
        Some(Refused::Limit(ConnectionLimit::PerUser, 2))
    );
    let _b = open("b", [10, 0, 0, 1]).0.unwrap();
    let _c = open("c", [10, 0, 0, 1]).0.unwrap();
    assert_eq!(
        open("d", [10, 0, 0, 1]).0.err(),
        Some(Refused::Limit(ConnectionLimit::PerIp, 3))
    );
    let _e = open("e", [10, 0, 0, 9]).0.unwrap();
    assert_eq!(
        open("f", [10, 0, 0, 8]).0.err(),
        Some(Refused::Limit(ConnectionLimit::Total, 5))
    );
    drop(a1);
    let _d = open("d", [10, 0, 0, 1]).0.unwrap();
    assert_eq!(registry.total(), 5);
}
