//! The queue's unit tests: order and bounds, the slow-consumer policies, heartbeats and
//! wake-ups.

use super::*;
use std::future::poll_fn;

fn stamp(seq: u64) -> Option<Stamp> {
    Some(Stamp::Event(Target::All, Position::new(1, seq)))
}

fn frame(seq: u64) -> Queued {
    Arc::new(Frame {
        stamp: stamp(seq),
        bytes: Bytes::from_static(b"data: x\n\n"),
        kind: None,
    })
}

fn typed(seq: u64, kind: &str, len: usize) -> Queued {
    Arc::new(Frame {
        stamp: stamp(seq),
        bytes: Bytes::from(vec![b'x'; len]),
        kind: Some(kind.into()),
    })
}

fn bounds(events: usize, bytes: usize, policy: SlowConsumer) -> Bounds {
    Bounds {
        events,
        bytes,
        policy,
    }
}

fn drain(rx: &mut Receiver) -> Vec<u64> {
    std::iter::from_fn(|| rx.try_recv().map(|queued| queued.seq())).collect()
}

#[tokio::test]
async fn delivers_in_order_up_to_capacity_then_ends_with_the_last_sender() {
    let (tx, mut rx) = bounded(bounds(2, 1 << 20, SlowConsumer::Disconnect));
    let other = tx.clone();
    tx.try_send(frame(1), 0).unwrap();
    other.try_send(frame(2), 0).unwrap();
    assert_eq!(tx.try_send(frame(3), 0), Err(SendError::Full));
    assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await.unwrap().seq(), 1);
    tx.try_send(frame(3), 0).unwrap();
    drop((tx, other));
    assert_eq!(rx.try_recv().unwrap().seq(), 2);
    assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await.unwrap().seq(), 3);
    assert!(poll_fn(|cx| rx.poll_recv(cx)).await.is_none());
}

#[test]
fn bytes_bound_the_queue_too_but_an_empty_queue_takes_any_frame() {
    let (tx, mut rx) = bounded(bounds(100, 250, SlowConsumer::Disconnect));
    tx.try_send(typed(1, "a", 100), 0).unwrap();
    tx.try_send(typed(2, "a", 100), 0).unwrap();
    assert_eq!(tx.try_send(typed(3, "a", 100), 0), Err(SendError::Full));
    tx.try_send(typed(3, "a", 50), 0).unwrap();
    assert_eq!(drain(&mut rx), [1, 2, 3]);
    assert_eq!(tx.shared.lock().bytes, 0);
    tx.try_send(typed(4, "a", 1000), 0).unwrap();
    assert_eq!(tx.try_send(typed(5, "a", 1), 0), Err(SendError::Full));
}

#[test]
fn drop_oldest_makes_room_and_keeps_the_newest() {
    let (tx, mut rx) = bounded(bounds(3, 1 << 20, SlowConsumer::DropOldest));
    for seq in 1..=10 {
        tx.try_send(frame(seq), 0).unwrap();
    }
    assert_eq!(tx.dropped(), 7);
    assert_eq!(drain(&mut rx), [8, 9, 10]);

    let (tx, mut rx) = bounded(bounds(100, 300, SlowConsumer::DropOldest));
    for seq in 1..=5 {
        tx.try_send(typed(seq, "a", 100), 0).unwrap();
    }
    assert_eq!(drain(&mut rx), [3, 4, 5]);
}

#[test]
fn latest_per_type_keeps_the_newest_of_each_type_in_order() {
    let (tx, mut rx) = bounded(bounds(3, 1 << 20, SlowConsumer::LatestPerType));
    tx.try_send(typed(1, "price", 10), 0).unwrap();
    tx.try_send(typed(2, "volume", 10), 0).unwrap();
    tx.try_send(typed(3, "price", 10), 0).unwrap();
    tx.try_send(frame(4), 0).unwrap();
    tx.try_send(typed(5, "volume", 10), 0).unwrap();
    assert_eq!(drain(&mut rx), [3, 4, 5]);
    assert_eq!(tx.dropped(), 2);
    // Full of distinct types: the oldest goes.
    for (seq, kind) in [(6, "a"), (7, "b"), (8, "c"), (9, "d")] {
        tx.try_send(typed(seq, kind, 10), 0).unwrap();
    }
    assert_eq!(drain(&mut rx), [7, 8, 9]);
}

#[test]
fn heartbeats_wait_only_in_an_empty_queue() {
    let (tx, mut rx) = bounded(bounds(4, 1 << 20, SlowConsumer::DropOldest));
    assert_eq!(tx.heartbeat(frame(0), 100, 100), Quiet::Silent);
    assert_eq!(tx.heartbeat(frame(0), 200, 200), Quiet::Active(200));
    assert_eq!(drain(&mut rx), [0]);
    tx.try_send(frame(1), 300).unwrap();
    assert_eq!(tx.heartbeat(frame(0), 400, 400), Quiet::Active(400));
    assert_eq!(drain(&mut rx), [1]);
}

#[test]
fn a_heartbeat_goes_only_to_a_stream_that_queued_nothing_since() {
    let (tx, mut rx) = bounded(bounds(4, 1 << 20, SlowConsumer::Disconnect));
    tx.try_send(frame(1), 1_000).unwrap();
    assert_eq!(drain(&mut rx), [1]);
    // Something was queued after 900: no heartbeat, and when it was.
    assert_eq!(tx.heartbeat(frame(0), 1_500, 900), Quiet::Active(1_000));
    // Nothing after 1,000 (the frame itself is not after it).
    assert_eq!(tx.heartbeat(frame(0), 2_000, 1_000), Quiet::Silent);
    assert_eq!(drain(&mut rx), [0]);
    // A heartbeat counts as queued: none again right after it.
    assert_eq!(tx.heartbeat(frame(0), 2_100, 1_500), Quiet::Active(2_000));
    // Across the wrap of the clock.
    tx.try_send(frame(2), u32::MAX - 10).unwrap();
    drain(&mut rx);
    assert_eq!(
        tx.heartbeat(frame(0), 5, u32::MAX - 20),
        Quiet::Active(u32::MAX - 10)
    );
    assert_eq!(tx.heartbeat(frame(0), 5, u32::MAX - 10), Quiet::Silent);
    assert_eq!(tx.quiet(10, 4), Quiet::Active(10), "a heartbeat waits");
    assert_eq!(drain(&mut rx), [0]);
    assert_eq!(tx.quiet(10, 4), Quiet::Active(5));
    assert_eq!(tx.quiet(10, 5), Quiet::Silent);
    assert!(drain(&mut rx).is_empty(), "asking sends nothing");
    // A frame queued after the clock's wrap is after a time before it, and one queued
    // before the wrap is not after a time past it.
    assert_eq!(tx.quiet(10, u32::MAX - 5), Quiet::Active(5));
    tx.try_send(frame(3), u32::MAX - 10).unwrap();
    drain(&mut rx);
    assert_eq!(tx.quiet(50, 5), Quiet::Silent);
    drop(rx);
    assert_eq!(tx.heartbeat(frame(0), 6, 6), Quiet::Gone);
}

#[tokio::test]
async fn wakes_a_waiting_receiver() {
    let (tx, mut rx) = bounded(bounds(4, 1 << 20, SlowConsumer::Disconnect));
    let waiting = tokio::spawn(async move { poll_fn(|cx| rx.poll_recv(cx)).await });
    tokio::task::yield_now().await;
    tx.try_send(frame(7), 0).unwrap();
    assert_eq!(waiting.await.unwrap().unwrap().seq(), 7);
}

#[test]
fn refuses_frames_once_the_receiver_is_gone_and_gives_back_burst_memory() {
    let (tx, mut rx) = bounded(bounds(1000, 1 << 20, SlowConsumer::Disconnect));
    for seq in 0..100 {
        tx.try_send(frame(seq), 0).unwrap();
    }
    while rx.try_recv().is_some() {}
    assert_eq!(tx.shared.lock().frames.capacity(), 0);
    drop(rx);
    assert_eq!(tx.try_send(frame(1), 0), Err(SendError::Closed));
}
