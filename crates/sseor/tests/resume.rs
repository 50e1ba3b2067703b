//! Resuming with `Last-Event-ID` on the embedded broker: nothing lost, nothing twice, and a
//! plain reset when the history cannot tell.

mod common;

use std::time::Duration;

use common::{Client, Server};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sseor::{Event, Manager, Position};

fn numbered(n: usize) -> Event {
    Event::new("n").with_data(json!({ "n": n }))
}

fn n_of(event: &eventsource_stream::Event) -> u64 {
    serde_json::from_str::<Value>(&event.data).unwrap()["n"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn a_client_that_comes_back_gets_exactly_what_it_missed_then_live() {
    let server = Server::start().await;
    let url = server.url("/api/v1/sse?user_id=u");
    let mut client = Client::connect(&url).await;
    server.wait_for_total(1).await;
    for n in 0..5 {
        server.manager.publish("u", numbered(n)).await.unwrap();
    }
    let mut last = String::new();
    for n in 0..5 {
        let event = client.next_event().await;
        assert_eq!(n_of(&event), n);
        last = event.id;
    }
    drop(client);
    server.wait_for_total(0).await;

    for n in 5..55 {
        server.manager.publish("u", numbered(n)).await.unwrap();
    }
    server
        .manager
        .publish("someone-else", numbered(999))
        .await
        .unwrap();
    let mut client = Client::resume(&url, Some(&last)).await;
    for n in 5..55 {
        assert_eq!(n_of(&client.next_event().await), n);
    }
    server.manager.publish("u", numbered(55)).await.unwrap();
    assert_eq!(
        n_of(&client.next_event().await),
        55,
        "then live, with nothing twice"
    );
}

#[tokio::test]
async fn the_query_parameter_resumes_too_and_covers_every_target_in_order() {
    let server = Server::start().await;
    let first = server.manager.publish_to_all(numbered(0)).await.unwrap();
    server.manager.publish("u", numbered(1)).await.unwrap();
    server
        .manager
        .publish_to_topic("news", numbered(2))
        .await
        .unwrap();
    server
        .manager
        .publish_to_topic("sports", numbered(3))
        .await
        .unwrap();
    server.manager.publish_to_all(numbered(4)).await.unwrap();
    server.manager.publish("u", numbered(5)).await.unwrap();
    let url = server.url(&format!(
        "/api/v1/sse?user_id=u&topic=news&last_event_id={}",
        first.id
    ));
    let mut client = Client::connect(&url).await;
    for n in [1, 2, 4, 5] {
        assert_eq!(n_of(&client.next_event().await), n);
    }
}

#[tokio::test]
async fn positions_that_cannot_be_resumed_get_one_reset_then_live() {
    let server = Server::with(Manager::builder().history(10, Duration::from_secs(3600))).await;
    let url = server.url("/api/v1/sse?user_id=u");
    let old = server.manager.publish("u", numbered(0)).await.unwrap();
    for n in 1..=20 {
        server.manager.publish("u", numbered(n)).await.unwrap();
    }
    let mut current = server.manager.publish("other", numbered(0)).await.unwrap();
    let now: Position = current.id.parse().unwrap();
    let future = Position::new(now.epoch(), now.ms(), 10_000);
    for (last, why) in [
        (old.id.clone(), "older than the history kept"),
        ("not-a-position".to_owned(), "not a position"),
        (format!("zz99-{}-3", now.ms()), "gone"),
        (future.to_string(), "not been reached"),
        ("9".repeat(5000), "not a position"),
        ("-1".to_owned(), "not a position"),
    ] {
        let mut client = Client::resume(&url, Some(&last)).await;
        let reset = client.next_event().await;
        assert_eq!(reset.event, sseor::RESET_EVENT, "{last}");
        let reason = serde_json::from_str::<Value>(&reset.data).unwrap()["reason"].clone();
        assert!(reason.as_str().unwrap().contains(why), "{last}: {reason}");
        assert_eq!(
            reset.id, current.id,
            "the reset carries the position to go on from"
        );
        let live = server.manager.publish("u", numbered(77)).await.unwrap();
        let event = client.next_event().await;
        assert_eq!((n_of(&event), event.id.as_str()), (77, live.id.as_str()));
        current = live;
    }
}

#[tokio::test]
async fn another_users_position_never_shows_their_events() {
    let server = Server::start().await;
    let theirs = server.manager.publish("victim", numbered(1)).await.unwrap();
    server.manager.publish("victim", numbered(2)).await.unwrap();
    server
        .manager
        .publish("attacker", numbered(3))
        .await
        .unwrap();
    let url = server.url("/api/v1/sse?user_id=attacker");
    let mut client = Client::resume(&url, Some(&theirs.id)).await;
    assert_eq!(n_of(&client.next_event().await), 3);
}

/// Publishers and clients come and go at random; every client, each time it comes back
/// with its last id, continues every one of its targets exactly where it left off.
#[tokio::test]
async fn random_comings_and_goings_lose_nothing_and_repeat_nothing() {
    let server = Server::with(Manager::builder().history(100_000, Duration::from_secs(3600))).await;
    let manager = server.manager.clone();
    let targets = ["user:a", "user:b", "topic:x", "all"];
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishing_done = done.clone();
    let publishing = tokio::spawn(async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut published: Vec<(String, u64)> = Vec::new();
        for n in 0..1500u64 {
            let target = targets[rng.random_range(0..targets.len())];
            let event = Event::new(target).with_data(json!({ "n": n }));
            match target {
                "user:a" => manager.publish("a", event).await,
                "user:b" => manager.publish("b", event).await,
                "topic:x" => manager.publish_to_topic("x", event).await,
                _ => manager.publish_to_all(event).await,
            }
            .unwrap();
            published.push((target.to_owned(), n));
            if n % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        publishing_done.store(true, std::sync::atomic::Ordering::SeqCst);
        published
    });

    let clients = [("a", &["x"][..]), ("b", &[][..]), ("a", &[][..])].map(|(user, topics)| {
        let base = server.url(&format!(
            "/api/v1/sse?user_id={user}{}",
            topics
                .iter()
                .map(|t| format!("&topic={t}"))
                .collect::<String>()
        ));
        let mut follows = vec![format!("user:{user}"), "all".to_owned()];
        follows.extend(topics.iter().map(|t| format!("topic:{t}")));
        let done = done.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(base.len() as u64);
            let mut received: Vec<(String, u64)> = Vec::new();
            let mut last: Option<String> = None;
            let mut first: Option<u64> = None;
            loop {
                let mut client = Client::resume(&base, last.as_deref()).await;
                for _ in 0..rng.random_range(1..60) {
                    // Quiet for a while once publishing is over: everything has arrived.
                    let event = loop {
                        let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                        match tokio::time::timeout(
                            Duration::from_millis(300),
                            client.try_next_event(),
                        )
                        .await
                        {
                            Ok(event) => break event.expect("the stream stays open"),
                            Err(_) if finished => return (follows, first, received),
                            Err(_) => {}
                        }
                    };
                    assert_ne!(event.event, sseor::RESET_EVENT, "nothing was lost");
                    first.get_or_insert(n_of(&event));
                    received.push((event.event.clone(), n_of(&event)));
                    last = Some(event.id);
                }
            }
        })
    });
    let published = publishing.await.unwrap();
    for client in clients {
        let (follows, first, received) = client.await.unwrap();
        let first = first.expect("the client received something");
        let expected: Vec<(String, u64)> = published
            .iter()
            .filter(|(target, n)| follows.contains(target) && *n >= first)
            .cloned()
            .collect();
        assert_eq!(received.len(), expected.len(), "{follows:?}");
        assert_eq!(received, expected, "{follows:?}");
    }
}
