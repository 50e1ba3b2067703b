//! Resuming with `Last-Event-ID` on the embedded broker: nothing lost, nothing twice, and a
//! plain reset when the history cannot tell.

use std::time::Duration;

use serde_json::{Value, json};
use sseor::{Event, Manager, Position, Target};
use sseor_testkit::library::Server;
use sseor_testkit::sse::Client;

use crate::common::{cursor, published_position, user};

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
    let url = server.url("/api/v1/sse?user_id=u&topic=news");
    let mut client = Client::connect(&url).await;
    client.opening_id().await;
    server.manager.publish_to_all(numbered(0)).await.unwrap();
    let first = client.next_event().await;
    assert_eq!(n_of(&first), 0);
    drop(client);
    server.wait_for_total(0).await;

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
    let mut client = Client::connect(&format!("{url}&last_event_id={}", first.id)).await;
    for n in [1, 2, 4, 5] {
        assert_eq!(n_of(&client.next_event().await), n);
    }
    server.manager.publish_to_all(numbered(6)).await.unwrap();
    assert_eq!(
        n_of(&client.next_event().await),
        6,
        "then live, nothing twice"
    );
}

#[tokio::test]
async fn positions_that_cannot_be_resumed_get_one_reset_then_live() {
    let server = Server::with(Manager::builder().history(10, Duration::from_secs(3600))).await;
    let url = server.url("/api/v1/sse?user_id=u");
    let u = user("u");
    let mut client = Client::connect(&url).await;
    client.opening_id().await;
    server.manager.publish("u", numbered(0)).await.unwrap();
    let old = client.next_event().await.id;
    drop(client);
    let mut now = Position::default();
    for n in 1..=20 {
        let published = server.manager.publish("u", numbered(n)).await.unwrap();
        now = published_position(&published);
    }
    let at = |position| cursor(&[(u.clone(), position), (Target::All, Position::default())]);
    let other_epoch = Position::new(now.epoch().wrapping_add(1).max(1), 3);
    let future = Position::new(now.epoch(), now.seq() + 10_000);
    for (last, why) in [
        (old, "older than the history kept"),
        ("not-a-position".to_owned(), "not a position"),
        (now.to_string(), "not a position"),
        ("k3f9-1764331200000-42".to_owned(), "not a position"),
        (at(other_epoch), "gone"),
        (at(future), "not been reached"),
        ("9".repeat(5000), "not a position"),
        ("-1".to_owned(), "not a position"),
    ] {
        let mut client = Client::resume(&url, Some(&last)).await;
        let reset = client.next_event().await;
        assert_eq!(reset.event, sseor::RESET_EVENT, "{last}");
        let reason = serde_json::from_str::<Value>(&reset.data).unwrap()["reason"].clone();
        assert!(reason.as_str().unwrap().contains(why), "{last}: {reason}");
        assert_eq!(
            reset.id,
            at(now),
            "the reset carries the position to go on from"
        );
        let live = server.manager.publish("u", numbered(77)).await.unwrap();
        now = published_position(&live);
        let event = client.next_event().await;
        assert_eq!((n_of(&event), event.id), (77, at(now)));
    }
}

#[tokio::test]
async fn another_users_id_never_shows_their_events() {
    let server = Server::start().await;
    let mut victim = Client::connect(&server.url("/api/v1/sse?user_id=victim")).await;
    victim.opening_id().await;
    server.manager.publish("victim", numbered(1)).await.unwrap();
    let theirs = victim.next_event().await.id;
    server.manager.publish("victim", numbered(2)).await.unwrap();
    let url = server.url("/api/v1/sse?user_id=attacker");
    let mut client = Client::resume(&url, Some(&theirs)).await;
    // The id holds no position of the attacker: the attacker's stream starts live there.
    let opening = client.opening_id().await;
    assert_eq!(
        sseor::Cursor::parse(&opening, &[user("attacker"), Target::All]).unwrap(),
        [
            (user("attacker"), Some(Position::default())),
            (Target::All, Some(Position::default()))
        ]
    );
    server
        .manager
        .publish("attacker", numbered(3))
        .await
        .unwrap();
    assert_eq!(n_of(&client.next_event().await), 3);
}

#[tokio::test]
async fn random_comings_and_goings_lose_nothing_and_repeat_nothing() {
    let server = Server::with(Manager::builder().history(100_000, Duration::from_secs(3600))).await;
    crate::common::random_comings_and_goings(vec![server.manager.clone()], vec![server.url("")])
        .await;
}

#[tokio::test]
async fn missed_events_older_than_the_retention_age_mean_a_reset() {
    let server = Server::with(Manager::builder().history(1000, Duration::from_millis(300))).await;
    crate::common::missed_events_older_than_the_retention_age_mean_a_reset(&server).await;
}

/// The bytes of `body` until they hold `needle`.
async fn body_until(body: &mut axum::body::Body, needle: &str) -> String {
    use http_body_util::BodyExt;
    let mut text = String::new();
    sseor_testkit::guard(async {
        while !text.contains(needle) {
            let frame = body.frame().await.expect("the stream ended").unwrap();
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    })
    .await;
    text
}

#[tokio::test]
async fn an_event_published_before_a_new_stream_is_first_read_reaches_it() {
    let manager = Manager::new("").await.unwrap();
    let request = http::Request::get("/events").body(()).unwrap();
    // The stream is registered, its response not read yet: where it starts is read when
    // its body is first polled, after this publish counted in it.
    let response = manager.handle_sse(&request, "early").unwrap();
    let first = manager.publish("early", numbered(1)).await.unwrap();
    let mut body = response.into_body();
    let text = body_until(&mut body, "\"n\":1").await;
    let id = text
        .lines()
        .take_while(|line| !line.starts_with("data:"))
        .filter_map(|line| line.strip_prefix("id: "))
        .last()
        .unwrap();
    let placed = sseor::Cursor::parse(id, &[user("early"), Target::All]).unwrap();
    assert_eq!(
        placed[0].1,
        Some(published_position(&first)),
        "the event's id is the stream at it"
    );
}

#[tokio::test]
async fn a_transient_event_is_delivered_without_an_id_and_not_replayed() {
    let server = Server::start().await;
    let url = server.url("/api/v1/sse?user_id=t");
    let mut client = Client::connect(&url).await;
    server.wait_for_total(1).await;
    client.opening_id().await;
    server.manager.publish("t", numbered(1)).await.unwrap();
    let numbered_event = client.next_event().await;
    let typing = server
        .manager
        .publish("t", Event::new("typing").transient())
        .await
        .unwrap();
    assert_eq!(typing.id, None, "a transient event has no position");
    let event = client.next_event().await;
    assert_eq!(event.event, "typing");
    assert_eq!(
        client.last_id(),
        numbered_event.id,
        "no id of its own: the client's cursor stays"
    );
    drop(client);
    server.manager.publish("t", numbered(2)).await.unwrap();
    server
        .manager
        .publish("t", Event::new("typing").transient())
        .await
        .unwrap();
    let mut resumed = Client::resume(&url, Some(&numbered_event.id)).await;
    assert_eq!(
        n_of(&resumed.next_event().await),
        2,
        "only what history keeps"
    );
    server.manager.publish("t", numbered(3)).await.unwrap();
    assert_eq!(n_of(&resumed.next_event().await), 3);
}
