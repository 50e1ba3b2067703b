//! Resuming with `Last-Event-ID` on the embedded broker: nothing lost, nothing twice, and a
//! plain reset when the history cannot tell.

use std::time::Duration;

use serde_json::{Value, json};
use sseor::{Event, Manager, Position};
use sseor_testkit::library::Server;
use sseor_testkit::sse::Client;

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

#[tokio::test]
async fn random_comings_and_goings_lose_nothing_and_repeat_nothing() {
    let server = Server::with(Manager::builder().history(100_000, Duration::from_secs(3600))).await;
    crate::common::random_comings_and_goings(vec![server.manager.clone()], vec![server.url("")])
        .await;
}

#[tokio::test]
async fn positions_older_than_the_retention_age_get_a_reset() {
    let server = Server::with(Manager::builder().history(1000, Duration::from_millis(300))).await;
    crate::common::an_old_position_gets_a_reset(&server).await;
}
