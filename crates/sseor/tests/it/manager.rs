//! The spec's API, method by method, over real HTTP.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use sseor::{Error, Event, Manager, Position, Target};
use sseor_testkit::library::Server;
use sseor_testkit::sse::Client;
use sseor_testkit::{free_port, guard, http};

use crate::common::{cursor, position_in, published_position, user};

fn deposit(amount: f64) -> Event {
    Event::new("transaction.updated").with_data(json!({
        "transaction_id": "txn_123",
        "status": "completed",
        "amount": amount,
    }))
}

fn data(event: &eventsource_stream::Event) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

#[tokio::test]
async fn publish_reaches_every_tab_of_the_user_and_no_one_else() {
    let server = Server::start().await;
    let mut tab1 = server.subscribe("user123", &[]).await;
    let mut tab2 = server.subscribe("user123", &[]).await;
    let mut other = server.subscribe("someone-else", &[]).await;
    server.wait_for_total(3).await;

    let published = server
        .manager
        .publish("user123", deposit(500.0))
        .await
        .unwrap();
    assert_eq!(published.delivered_locally, Some(2));

    // Each tab's id: where it stands in the user's events (this one) and the broadcasts
    // (none yet).
    let id = cursor(&[
        (user("user123"), published_position(&published)),
        (Target::All, Position::default()),
    ]);
    for tab in [&mut tab1, &mut tab2] {
        let event = tab.next_event().await;
        assert_eq!(event.event, "transaction.updated");
        assert_eq!(event.id, id);
        assert_eq!(
            data(&event),
            json!({"transaction_id": "txn_123", "status": "completed", "amount": 500.0})
        );
    }
    // The other user's first event is the next broadcast, not user123's deposit.
    server
        .manager
        .publish_to_all(Event::new("marker"))
        .await
        .unwrap();
    assert_eq!(other.next_event().await.event, "marker");
}

#[tokio::test]
async fn topics_and_broadcasts_reach_their_audience() {
    let server = Server::start().await;
    let mut news_reader = server.subscribe("a", &["news", "sports"]).await;
    let mut plain = server.subscribe("b", &[]).await;
    server.wait_for_total(2).await;

    let news = server
        .manager
        .publish_to_topic("news", Event::new("headline"))
        .await
        .unwrap();
    assert_eq!(news.delivered_locally, Some(1));
    let all = server
        .manager
        .publish_to_all(Event::new("announcement"))
        .await
        .unwrap();
    assert_eq!(all.delivered_locally, Some(2));

    assert_eq!(news_reader.next_event().await.event, "headline");
    assert_eq!(news_reader.next_event().await.event, "announcement");
    assert_eq!(plain.next_event().await.event, "announcement");
    assert_eq!(server.manager.topic_connection_count("news"), 1);
    assert_eq!(server.manager.topic_connection_count("weather"), 0);
}

#[tokio::test]
async fn each_event_is_numbered_in_its_target_and_publisher_ids_deduplicate() {
    let server = Server::start().await;
    let mut client = server.subscribe("u", &[]).await;
    server.wait_for_total(1).await;
    let u = user("u");
    let mut last = Position::default();
    for seq in 1..=5 {
        let published = server
            .manager
            .publish("u", Event::new("tick"))
            .await
            .unwrap();
        let position = published_position(&published);
        assert_eq!(position.seq(), seq, "{position} after {last}");
        assert!(
            seq == 1 || position.epoch() == last.epoch(),
            "{position} after {last}"
        );
        last = position;
        // The event's id is the stream's cursor, which now holds this position.
        assert_eq!(position_in(&client.next_event().await.id, &u), position);
    }
    // Another target numbers its own events.
    let elsewhere = server
        .manager
        .publish("w", Event::new("tick"))
        .await
        .unwrap();
    assert_eq!(published_position(&elsewhere).seq(), 1);
    // A publisher's own id is not the wire id (that must stay the stream's cursor, to
    // resume from) but makes a repeated publish of the same event harmless.
    let first = server
        .manager
        .publish("u", Event::new("order").with_id("order-7").with_retry(1234))
        .await
        .unwrap();
    assert!(!first.duplicate);
    let event = client.next_event().await;
    assert_eq!(position_in(&event.id, &u), published_position(&first));
    assert_eq!(event.retry, Some(std::time::Duration::from_millis(1234)));
    let again = server
        .manager
        .publish("u", Event::new("order").with_id("order-7"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    // The same id for another target is another event.
    let elsewhere = server
        .manager
        .publish("v", Event::new("order").with_id("order-7"))
        .await
        .unwrap();
    assert!(!elsewhere.duplicate);
    server
        .manager
        .publish("u", Event::new("next"))
        .await
        .unwrap();
    assert_eq!(client.next_event().await.event, "next");
}

#[tokio::test]
async fn counts_follow_connections() {
    let server = Server::start().await;
    assert_eq!(server.manager.total_connections(), 0);
    let first = server.subscribe("user123", &[]).await;
    let second = server.subscribe("user123", &[]).await;
    let third = server.subscribe("u2", &[]).await;
    server.wait_for_total(3).await;
    assert_eq!(server.manager.connection_count("user123"), 2);
    assert_eq!(server.manager.connection_count("u2"), 1);
    assert_eq!(server.manager.connection_count("nobody"), 0);
    assert_eq!(server.manager.connection_count(""), 0);

    let counts: Value = http()
        .get(server.url("/api/v1/connections?user_id=user123"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        counts,
        json!({"user_id": "user123", "user": 2, "total": 3, "cluster_user": 2, "cluster_total": 3})
    );

    drop((first, second));
    server.wait_for_total(1).await;
    assert_eq!(server.manager.connection_count("user123"), 0);
    drop(third);
    server.wait_for_total(0).await;
}

#[tokio::test]
async fn routes_get_the_request_and_the_manager() {
    let manager = Manager::builder()
        .handle_signals(false)
        .build()
        .await
        .unwrap();
    manager
        .route(
            "/api/v1/sse/transactions",
            |request: Request, manager: Manager| async move {
                let user_id = request
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("user_id="))
                    .unwrap_or_default()
                    .to_owned();
                if user_id.is_empty() {
                    return (StatusCode::BAD_REQUEST, "user_id required").into_response();
                }
                manager.handle_sse(&request, &user_id).into_response()
            },
        )
        .unwrap();
    assert!(matches!(
        manager.route("/api/v1/sse/transactions", |_: Request, _: Manager| async {
        }),
        Err(Error::InvalidRoute(_))
    ));
    assert!(matches!(
        manager.route("no-slash", |_: Request, _: Manager| async {}),
        Err(Error::InvalidRoute(_))
    ));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn({
        let manager = manager.clone();
        async move { manager.serve(listener, manager.router()).await }
    });
    let base = format!("http://{addr}/api/v1/sse/transactions");
    let missing = http().get(&base).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(missing.text().await.unwrap(), "user_id required");

    let mut client = Client::connect(&format!("{base}?user_id=user123")).await;
    assert_eq!(manager.connection_count("user123"), 1);
    manager.publish("user123", deposit(12.5)).await.unwrap();
    assert_eq!(data(&client.next_event().await)["amount"], 12.5);

    manager.close().await;
    client.wait_for_end().await;
    guard(serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn listen_and_serve_takes_the_spec_address_forms() {
    let manager = Manager::builder()
        .handle_signals(false)
        .build()
        .await
        .unwrap();
    for bad in ["9090", "localhost", ":port", "host:99999"] {
        assert!(
            matches!(
                manager.listen_and_serve(bad).await,
                Err(Error::InvalidAddress(_))
            ),
            "{bad}"
        );
    }
    // A port that is taken is an I/O error, not a panic.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    assert!(matches!(
        manager.listen_and_serve(&taken_addr).await,
        Err(Error::Io(_))
    ));

    let port = free_port();
    manager
        .route("/events", |request: Request, manager: Manager| async move {
            manager.handle_sse(&request, "spec-user")
        })
        .unwrap();
    let serving = tokio::spawn({
        let manager = manager.clone();
        async move { manager.listen_and_serve(&format!(":{port}")).await }
    });
    guard(async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut client = Client::connect(&format!("http://127.0.0.1:{port}/events")).await;
    manager
        .publish("spec-user", Event::new("hi"))
        .await
        .unwrap();
    assert_eq!(client.next_event().await.event, "hi");
    manager.close().await;
    guard(serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn broker_urls_are_checked() {
    assert!(Manager::new("").await.is_ok());
    assert!(Manager::new("memory://").await.is_ok());
    for url in [
        "foo://user:s3cret@bar",
        "http://:s3cret@localhost:6379/5",
        "not a url",
    ] {
        let err = Manager::new(url).await.unwrap_err();
        assert!(matches!(err, Error::InvalidUrl(_)), "{url}: {err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}

#[tokio::test]
async fn a_closed_manager_refuses_work() {
    let server = Server::start().await;
    let mut client = server.subscribe("u", &[]).await;
    server.wait_for_total(1).await;
    server.manager.close().await;
    client.wait_for_end().await;
    assert!(server.manager.is_closed());
    assert!(matches!(
        server.manager.publish("u", Event::new("late")).await,
        Err(Error::Closed)
    ));
    let request = http::Request::new(());
    assert!(matches!(
        server.manager.handle_sse(&request, "u"),
        Err(Error::Closed)
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    assert!(matches!(
        server.manager.serve(listener, axum::Router::new()).await,
        Err(Error::Closed)
    ));
    guard(server.serving).await.unwrap().unwrap();
    // close() twice is harmless.
    server.manager.close().await;
}

#[tokio::test]
async fn library_input_errors_change_nothing() {
    let server = Server::start().await;
    let mut client = server.subscribe("u", &[]).await;
    server.wait_for_total(1).await;
    let manager = &server.manager;
    for bad in [
        Event::new(""),
        Event::new("a\nevent: forged"),
        Event::new("ok").with_id("1\ndata: forged"),
        Event::new("ok").with_id("nul\0"),
    ] {
        assert!(matches!(
            manager.publish("u", bad).await,
            Err(Error::InvalidEvent(_))
        ));
    }
    assert!(matches!(
        manager.publish("", Event::new("ok")).await,
        Err(Error::InvalidTarget(_))
    ));
    assert!(matches!(
        manager.publish_to_topic("a\r\nb", Event::new("ok")).await,
        Err(Error::InvalidTarget(_))
    ));
    manager.publish("u", Event::new("good")).await.unwrap();
    let first = client.next_event().await;
    assert_eq!(first.event, "good");
    let position = position_in(&first.id, &user("u"));
    assert_eq!(
        position.seq(),
        1,
        "rejected events must not use up positions"
    );
}
