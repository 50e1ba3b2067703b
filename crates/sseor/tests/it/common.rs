//! What the library's tests share beyond the kit: scenarios that several files run, and
//! managers on Redis that notice faults quickly.

use std::time::Duration;

use eventsource_stream::Event as SseEvent;
use sseor::{Builder, Manager};
use sseor_testkit::library::Server;
use sseor_testkit::redis::{RedisServer, wait_for_subscribers};
use sseor_testkit::sse::{Client, Next};
use sseor_testkit::{guard, http};

/// POSTs `body` to the server's `/api/v1/publish`; the status and the JSON answer.
pub(crate) async fn publish(server: &Server, body: serde_json::Value) -> (u16, serde_json::Value) {
    let response = guard(
        http()
            .post(server.url("/api/v1/publish"))
            .json(&body)
            .send(),
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Publishers and clients come and go at random for a while. Each publisher sends 500
/// events to random targets through one of `managers`; each client connects to a random
/// server among `servers`, reads a random number of events, leaves, and comes back with
/// its last id. At the end, every client must have received, for each of its targets,
/// exactly the events published after its first one, in order, none twice, and no reset.
pub(crate) async fn random_comings_and_goings(managers: Vec<Manager>, servers: Vec<String>) {
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let targets = ["user:a", "user:b", "topic:x", "all"];
    let done = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..3u64)
        .map(|p| {
            let managers = managers.clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(p);
                let mut sent = Vec::new();
                for k in 0..500u64 {
                    let manager = &managers[rng.random_range(0..managers.len())];
                    let target = targets[rng.random_range(0..targets.len())];
                    let event = sseor::Event::new(target)
                        .with_data(serde_json::json!({ "n": p * 1000 + k }));
                    let published = match target {
                        "user:a" => manager.publish("a", event).await,
                        "user:b" => manager.publish("b", event).await,
                        "topic:x" => manager.publish_to_topic("x", event).await,
                        _ => manager.publish_to_all(event).await,
                    }
                    .unwrap();
                    let seq = published.id.parse::<sseor::Position>().unwrap().seq();
                    sent.push((seq, target.to_owned(), p * 1000 + k));
                    if k % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                sent
            })
        })
        .collect();

    let clients: Vec<_> = [
        ("a", &["x"][..]),
        ("b", &[][..]),
        ("a", &[][..]),
        ("b", &["x"][..]),
    ]
    .into_iter()
    .enumerate()
    .map(|(c, (user, topics))| {
        let query = format!(
            "/api/v1/sse?user_id={user}{}",
            topics
                .iter()
                .map(|t| format!("&topic={t}"))
                .collect::<String>()
        );
        let mut follows = vec![format!("user:{user}"), "all".to_owned()];
        follows.extend(topics.iter().map(|t| format!("topic:{t}")));
        let (servers, done) = (servers.clone(), done.clone());
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(100 + c as u64);
            let mut received: Vec<(u64, String, u64)> = Vec::new();
            let mut last: Option<String> = None;
            loop {
                let server = &servers[rng.random_range(0..servers.len())];
                let mut client = Client::resume(&format!("{server}{query}"), last.as_deref()).await;
                for _ in 0..rng.random_range(1..60) {
                    let event = loop {
                        let finished = done.load(Ordering::SeqCst);
                        match tokio::time::timeout(
                            Duration::from_millis(500),
                            client.next_or_ending(),
                        )
                        .await
                        {
                            Ok(Next::Event(event)) => break Some(event),
                            Ok(Next::End) => break None,
                            Ok(Next::CutOff(error)) => {
                                panic!("a stream failed instead of ending cleanly: {error}")
                            }
                            Err(_) if finished => return (follows, received),
                            Err(_) => {}
                        }
                    };
                    // A stream the server ended: come back, as a browser does.
                    let Some(event) = event else { break };
                    assert_ne!(
                        event.event,
                        sseor::RESET_EVENT,
                        "nothing was lost: {}",
                        event.data
                    );
                    let seq = event.id.parse::<sseor::Position>().unwrap().seq();
                    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
                    received.push((seq, event.event.clone(), data["n"].as_u64().unwrap()));
                    last = Some(event.id);
                }
            }
        })
    })
    .collect();

    let mut published = Vec::new();
    for publisher in publishers {
        published.extend(publisher.await.unwrap());
    }
    published.sort();
    done.store(true, Ordering::SeqCst);
    for client in clients {
        let (follows, received) = client.await.unwrap();
        let first = received.first().expect("the client received something").0;
        let expected: Vec<(u64, String, u64)> = published
            .iter()
            .filter(|(seq, target, _)| *seq >= first && follows.contains(target))
            .cloned()
            .collect();
        if received != expected {
            let at = received
                .iter()
                .zip(&expected)
                .take_while(|(r, e)| r == e)
                .count();
            eprintln!(
                "{follows:?} diverges at {at}: received {:?} expected {:?}",
                &received[at.saturating_sub(2)..(at + 3).min(received.len())],
                &expected[at.saturating_sub(2)..(at + 3).min(expected.len())]
            );
        }
        assert_eq!(received.len(), expected.len(), "{follows:?}");
        assert_eq!(received, expected, "{follows:?}");
    }
}

/// On a server that keeps events 300 ms: a position 400 ms old gets a reset.
pub(crate) async fn an_old_position_gets_a_reset(server: &Server) {
    let event = sseor::Event::new("n").with_data(serde_json::json!({ "n": 1 }));
    let old = server.manager.publish("val", event).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let url = server.url("/api/v1/sse?user_id=val");
    let mut client = Client::resume(&url, Some(&old.id)).await;
    let reset = client.next_event().await;
    assert_eq!(reset.event, sseor::RESET_EVENT);
    assert!(reset.data.contains("older"), "{}", reset.data);
}

/// How often the managers of [`redis_builder`] probe Redis.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// A manager on the Redis at `url` that notices faults within a second: it probes every
/// [`PROBE_INTERVAL`] and gives up on a command after 500 ms.
pub(crate) fn redis_builder(url: &str) -> Builder {
    Manager::builder()
        .broker_url(url)
        .redis_probe_interval(PROBE_INTERVAL)
        .redis_timeout(Duration::from_millis(500))
}

/// A server on `redis`, once its manager is ready.
pub(crate) async fn instance(redis: &RedisServer) -> Server {
    let server = Server::with(redis_builder(&redis.url())).await;
    wait_ready(&server.manager).await;
    server
}

/// Polls until `manager` is ready.
pub(crate) async fn wait_ready(manager: &Manager) {
    guard(async {
        while manager.readiness().is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Polls until `manager` is not ready; the reason it gives.
pub(crate) async fn wait_unready(manager: &Manager) -> String {
    guard(async {
        loop {
            if let Err(reason) = manager.readiness() {
                return reason;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// An event of type `n` whose data is `{"n": n}`.
pub(crate) fn numbered(n: u64) -> sseor::Event {
    sseor::Event::new("n").with_data(serde_json::json!({ "n": n }))
}

/// The `n` of an event made by [`numbered`]; panics on any other event.
pub(crate) fn n_of(event: &SseEvent) -> u64 {
    serde_json::from_str::<serde_json::Value>(&event.data).unwrap()["n"]
        .as_u64()
        .unwrap_or_else(|| panic!("not a numbered event: {event:?}"))
}

/// Receives events 0..count on `user` through `server`, and returns the last id.
pub(crate) async fn receive_some(
    server: &Server,
    redis: &RedisServer,
    user: &str,
    count: u64,
) -> String {
    let mut client = server.subscribe(user, &[]).await;
    wait_for_subscribers(redis, &format!("sseor:user:{user}"), "1").await;
    let mut last = String::new();
    for n in 0..count {
        server.manager.publish(user, numbered(n)).await.unwrap();
        let event = client.next_event().await;
        assert_eq!(n_of(&event), n);
        last = event.id;
    }
    last
}
