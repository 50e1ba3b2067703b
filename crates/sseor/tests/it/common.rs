//! What the library's tests share beyond the kit: scenarios that several files run, and
//! managers on Redis that notice faults quickly.

use std::time::Duration;

use eventsource_stream::Event as SseEvent;
use sseor::{Builder, Cursor, Manager, Position, Target};
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

/// `len` letters that vary from one to the next (and with `seed`), so that a byte lost or
/// repeated on the way, where a buffer or a frame ends, shows in a comparison.
pub(crate) fn varied_text(len: usize, seed: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + ((i * 7 + seed) % 26) as u8))
        .collect()
}

/// The target an event of the churn is published to, by its name there (which is also
/// the event's type): `user:ID`, `topic:NAME` or `all`.
fn churn_target(name: &str) -> Target {
    if let Some(user) = name.strip_prefix("user:") {
        return Target::user(user).unwrap();
    }
    match name.strip_prefix("topic:") {
        Some(topic) => Target::topic(topic).unwrap(),
        None => Target::All,
    }
}

/// An event of the churn: its target's name, its position there, and its number.
type Numbered = (String, Position, u64);

/// Publishers and clients come and go at random for a while. Each publisher sends 500
/// events to random targets through one of `managers`; each client connects to a random
/// server among `servers`, reads a random number of events, leaves, and comes back with
/// its last id. At the end, every client must have received, for each of its targets,
/// exactly the events published to it after the position its stream started from, in
/// that target's order, none twice, and no reset. Events of different targets may
/// interleave in any order: targets share no sequence.
/// [`random_comings_and_goings`] across two instances on the Redis (or cluster) at `url`,
/// keeping all the history the test publishes.
pub(crate) async fn random_comings_and_goings_on(url: &str) {
    let builder = || redis_builder(url).history(100_000, Duration::from_secs(3600));
    let a = Server::with(builder()).await;
    let b = Server::with(builder()).await;
    wait_ready(&a.manager).await;
    wait_ready(&b.manager).await;
    random_comings_and_goings(
        vec![a.manager.clone(), b.manager.clone()],
        vec![a.url(""), b.url("")],
    )
    .await;
}

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
                let mut sent: Vec<Numbered> = Vec::new();
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
                    sent.push((
                        target.to_owned(),
                        published_position(&published),
                        p * 1000 + k,
                    ));
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
        // In the stream's order: its user, the broadcasts, its topics.
        let mut follows = vec![Target::user(user).unwrap(), Target::All];
        follows.extend(topics.iter().map(|t| Target::topic(t).unwrap()));
        let (servers, done) = (servers.clone(), done.clone());
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(100 + c as u64);
            let mut received: Vec<Numbered> = Vec::new();
            let mut start: Option<Vec<(Target, Option<Position>)>> = None;
            let mut last: Option<String> = None;
            loop {
                let server = &servers[rng.random_range(0..servers.len())];
                let mut client = Client::resume(&format!("{server}{query}"), last.as_deref()).await;
                if start.is_none() {
                    let opening = client.opening_id().await;
                    start = Some(sseor::Cursor::parse(&opening, &follows).unwrap());
                }
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
                            Err(_) if finished => return (start.unwrap(), received),
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
                    let position = position_in(&event.id, &churn_target(&event.event));
                    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
                    received.push((event.event.clone(), position, data["n"].as_u64().unwrap()));
                }
                last = Some(client.last_id().to_owned());
            }
        })
    })
    .collect();

    let mut published = Vec::new();
    for publisher in publishers {
        published.extend(publisher.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    for client in clients {
        let (start, received) = client.await.unwrap();
        for name in targets {
            let target = churn_target(name);
            let Some((_, from)) = start.iter().find(|(t, _)| *t == target) else {
                let stray: Vec<_> = received.iter().filter(|(t, ..)| t == name).collect();
                assert!(stray.is_empty(), "{name} is not followed: {stray:?}");
                continue;
            };
            let from = from.expect("a new stream starts at a position in every target");
            let mut expected: Vec<(Position, u64)> = published
                .iter()
                .filter(|(t, position, _)| t == name && after(*position, from))
                .map(|(_, position, n)| (*position, *n))
                .collect();
            expected.sort_by_key(|(position, _)| position.seq());
            let got: Vec<(Position, u64)> = received
                .iter()
                .filter(|(t, ..)| t == name)
                .map(|(_, position, n)| (*position, *n))
                .collect();
            if got != expected {
                let at = got
                    .iter()
                    .zip(&expected)
                    .take_while(|(r, e)| r == e)
                    .count();
                eprintln!(
                    "{start:?}, {name} diverges at {at}: received {:?} expected {:?}",
                    &got[at.saturating_sub(2)..(at + 3).min(got.len())],
                    &expected[at.saturating_sub(2)..(at + 3).min(expected.len())]
                );
            }
            assert_eq!(got.len(), expected.len(), "{start:?}: {name}");
            assert_eq!(got, expected, "{start:?}: {name}");
        }
    }
}

/// Whether `position` comes after `start` in its target's sequence: any position of a
/// target that had none at `start` (epoch 0), else a later number of the same epoch.
fn after(position: Position, start: Position) -> bool {
    if start.epoch() == 0 {
        return true;
    }
    assert_eq!(position.epoch(), start.epoch(), "one epoch throughout");
    position.seq() > start.seq()
}

/// On a server that keeps events 300 ms: a client that missed events older than that gets
/// a reset; one that missed nothing goes on without one, however old its position.
pub(crate) async fn missed_events_older_than_the_retention_age_mean_a_reset(server: &Server) {
    let url = server.url("/api/v1/sse?user_id=val");
    let mut client = Client::connect(&url).await;
    client.opening_id().await;
    server.manager.publish("val", numbered(1)).await.unwrap();
    let seen = client.next_event().await.id;
    drop(client);
    server.manager.publish("val", numbered(2)).await.unwrap();
    // Redis drops a target's history between max_age and 1.5 × max_age after its last
    // event (its lifetime is extended by 1.5 × max_age every max_age / 2).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut client = Client::resume(&url, Some(&seen)).await;
    let reset = client.next_event().await;
    assert_eq!(reset.event, sseor::RESET_EVENT);
    assert!(reset.data.contains("older"), "{}", reset.data);
    drop(client);

    // The reset's id stands after event 2: nothing was published since.
    let mut client = Client::resume(&url, Some(&reset.id)).await;
    assert_eq!(client.opening_id().await, reset.id, "nothing to replay");
    server.manager.publish("val", numbered(3)).await.unwrap();
    let live = client.next_event().await;
    assert_eq!((live.event.as_str(), n_of(&live)), ("n", 3));
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

/// A manager as [`redis_builder`] makes it, whose presence in Redis is refreshed every
/// 100 ms (and expires after 300 ms without a refresh).
pub(crate) fn quick_presence(url: &str) -> Builder {
    redis_builder(url).redis_presence_ttl(Duration::from_millis(300))
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
    let mut client = open_live(server, user, &[]).await;
    wait_for_subscribers(redis, &user_channel(user), "1").await;
    let mut last = String::new();
    for n in 0..count {
        server.manager.publish(user, numbered(n)).await.unwrap();
        let event = client.next_event().await;
        assert_eq!(n_of(&event), n);
        last = event.id;
    }
    last
}

/// Opens the stream of `user` and `topics` on `server`, and waits until it is live: its
/// opening id read. A stream starts where its targets stand as it reads them (after it
/// subscribed): an event published before that is not its to send.
pub(crate) async fn open_live(server: &Server, user: &str, topics: &[&str]) -> Client {
    let mut client = server.subscribe(user, topics).await;
    client.opening_id().await;
    client
}

/// The Redis channel, and sequence key, of `user`'s events, under the default prefix.
pub(crate) fn user_channel(user: &str) -> String {
    format!("sseor:{{user:{user}}}")
}

/// The Redis channel, and sequence key, of `topic`'s events, under the default prefix.
pub(crate) fn topic_channel(topic: &str) -> String {
    format!("sseor:{{topic:{topic}}}")
}

/// The Redis channel of the broadcasts, under the default prefix.
pub(crate) const ALL_CHANNEL: &str = "sseor:{all}";

/// The position a publish answered; panics for a transient event, which has none.
pub(crate) fn published_position(published: &sseor::Published) -> Position {
    published
        .id
        .as_deref()
        .expect("a numbered event has a position")
        .parse()
        .unwrap()
}

/// The position of `target` in the stream cursor `id` (an `id:` a stream sent); panics
/// when `id` is not a cursor, or holds no position of `target`.
pub(crate) fn position_in(id: &str, target: &Target) -> Position {
    Cursor::parse(id, std::slice::from_ref(target))
        .unwrap_or_else(|e| panic!("{id:?} is not a cursor: {e}"))[0]
        .1
        .unwrap_or_else(|| panic!("{id:?} holds no position of {target}"))
}

/// The cursor of a stream of `targets` (in the stream's order: its user, the broadcasts,
/// then its topics as given), each at the position given: what such a stream writes as
/// its `id:`.
pub(crate) fn cursor(targets: &[(Target, Position)]) -> String {
    let mut cursor = Cursor::new(targets.iter().map(|(target, _)| target.clone()));
    for (target, position) in targets {
        cursor.advance(target, *position);
    }
    cursor.to_string()
}

/// The target of `user`'s events.
pub(crate) fn user(user: &str) -> Target {
    Target::user(user).unwrap()
}
