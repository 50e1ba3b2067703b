//! The Redis broker against real `redis-server` processes.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use serde_json::json;
use sseor::{Error, Event, Manager, Target};
use sseor_testkit::certs::Ca;
use sseor_testkit::library::Server;
use sseor_testkit::redis::{RedisServer, wait_for_subscribers};
use sseor_testkit::sse::Client;
use sseor_testkit::{free_port, guard};

use crate::common::{
    ALL_CHANNEL, instance, n_of, numbered, open_live, position_in, published_position,
    receive_some, redis_builder, topic_channel, user, user_channel, wait_ready, wait_unready,
};

/// Whether Redis counts a subscriber on `channel`.
fn client_subscribed(redis: &RedisServer, channel: &str) -> bool {
    redis.cli(&["PUBSUB", "NUMSUB", channel]).lines().nth(1) == Some("1")
}

#[tokio::test]
async fn events_cross_instances_exactly_once() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let mut on_a = open_live(&a, "u1", &[]).await;
    let mut on_b = open_live(&b, "u1", &["prices"]).await;
    let mut other = open_live(&b, "u2", &[]).await;
    wait_for_subscribers(&redis, &user_channel("u1"), "2").await;
    wait_for_subscribers(&redis, &topic_channel("prices"), "1").await;

    let published = a.manager.publish("u1", Event::new("from-a")).await.unwrap();
    assert_eq!(published.instances, Some(2));
    for client in [&mut on_a, &mut on_b] {
        let event = client.next_event().await;
        assert_eq!(
            (event.event.as_str(), position_in(&event.id, &user("u1"))),
            ("from-a", published_position(&published))
        );
    }
    a.manager
        .publish_to_topic(
            "prices",
            Event::new("price").with_data(json!({"eur": 1.08})),
        )
        .await
        .unwrap();
    assert_eq!(on_b.next_event().await.data, r#"{"eur":1.08}"#);
    let everyone = b.manager.publish_to_all(Event::new("all")).await.unwrap();
    for client in [&mut on_a, &mut on_b, &mut other] {
        let event = client.next_event().await;
        assert_eq!(
            (event.event.as_str(), position_in(&event.id, &Target::All)),
            ("all", published_position(&everyone))
        );
    }
    // Nothing arrived twice: the next event each client sees is the next one published.
    let marker = a
        .manager
        .publish_to_all(Event::new("marker"))
        .await
        .unwrap();
    for client in [&mut on_a, &mut on_b, &mut other] {
        assert_eq!(client.next_event().await.event, "marker");
    }
    let first = published_position(&everyone);
    let next = published_position(&marker);
    assert_eq!(
        (next.epoch(), next.seq()),
        (first.epoch(), first.seq() + 1),
        "a target's positions follow each other across instances"
    );
}

#[tokio::test]
async fn any_redis_client_can_publish_and_bad_payloads_are_skipped() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let mut client = server.subscribe("user123", &[]).await;
    let opening = client.opening_id().await;
    wait_for_subscribers(&redis, &user_channel("user123"), "1").await;

    for garbage in [
        "not json",
        r#"{"data": {}}"#,
        r#"{"type": "a\nevent: forged", "data": {}}"#,
        r#"{"type": "t", "data": "not an object"}"#,
        r#"{"type": "t", "id": "1\r\n"}"#,
    ] {
        assert_eq!(
            redis.cli(&["PUBLISH", &user_channel("user123"), garbage]),
            "1"
        );
    }
    redis.cli(&[
        "PUBLISH",
        &user_channel("user123"),
        r#"{"id":"ext-1","type":"transaction.updated","data":{"amount":500}}"#,
    ]);
    let event = client.next_event().await;
    assert_eq!(event.event, "transaction.updated");
    // Not a position of this server: it goes out without an id, and the client's last id
    // stays where its stream stood.
    assert_eq!(event.id, opening);
    assert_eq!(event.data, r#"{"amount":500}"#);
    // The instance is still healthy and serving.
    assert!(server.manager.readiness().is_ok());
}

#[tokio::test]
async fn subscriptions_follow_local_connections() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let first = server.subscribe("carol", &["news"]).await;
    let second = server.subscribe("carol", &[]).await;
    wait_for_subscribers(&redis, &user_channel("carol"), "1").await;
    wait_for_subscribers(&redis, &topic_channel("news"), "1").await;
    assert_eq!(
        redis.cli(&["PUBSUB", "NUMPAT"]),
        "0",
        "no pattern subscriptions"
    );
    drop(first);
    wait_for_subscribers(&redis, &topic_channel("news"), "0").await;
    wait_for_subscribers(&redis, &user_channel("carol"), "1").await;
    drop(second);
    wait_for_subscribers(&redis, &user_channel("carol"), "0").await;
    wait_for_subscribers(&redis, ALL_CHANNEL, "0").await;
    // Two connections to Redis in all: commands and subscriptions.
    let clients = redis.cli(&["CLIENT", "LIST"]);
    assert_eq!(clients.lines().count(), 2 + 1, "{clients}"); // + this redis-cli
}

#[tokio::test]
async fn a_hundred_thousand_users_subscribe_in_batches() {
    let redis = RedisServer::start();
    let manager = redis_builder(&redis.url())
        // 100,000 subscriptions keep this Redis busy: give commands more time.
        .redis_timeout(Duration::from_secs(5))
        .handle_signals(false)
        .build()
        .await
        .unwrap();
    wait_ready(&manager).await;
    let request = http::Request::new(());
    let users = 100_000;
    let started = Instant::now();
    let mut streams: Vec<_> = (0..users)
        .map(|n| manager.handle_sse(&request, &format!("user{n}")).unwrap())
        .collect();
    guard(async {
        while redis
            .cli(&["PUBSUB", "NUMSUB", &user_channel("user99999")])
            .lines()
            .nth(1)
            != Some("1")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    eprintln!("{users} users subscribed in {:?}", started.elapsed());
    let channels = redis.cli(&["PUBSUB", "CHANNELS", "sseor:{user:*"]);
    assert_eq!(channels.lines().count(), users);

    let body = streams.pop().unwrap().into_body();
    let mut body = std::pin::pin!(body);
    // The first bytes (the retry hint) mean the stream has started: publish now.
    let first = guard(body.frame()).await.unwrap().unwrap();
    let mut seen = first.into_data().unwrap().to_vec();
    manager
        .publish("user99999", Event::new("found"))
        .await
        .unwrap();
    guard(async {
        while !String::from_utf8_lossy(&seen).contains("event: found") {
            let frame = body.frame().await.unwrap().unwrap();
            seen.extend_from_slice(frame.data_ref().unwrap());
        }
    })
    .await;
    drop(streams);
    guard(async {
        while redis
            .cli(&["PUBSUB", "NUMSUB", &user_channel("user5")])
            .lines()
            .nth(1)
            != Some("0")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    manager.close().await;
}

#[tokio::test]
async fn a_redis_crash_is_survived_without_any_action() {
    let mut redis = RedisServer::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let mut client = open_live(&b, "dave", &[]).await;
    wait_for_subscribers(&redis, &user_channel("dave"), "1").await;
    a.manager
        .publish("dave", Event::new("before"))
        .await
        .unwrap();
    assert_eq!(client.next_event().await.event, "before");

    redis.kill();
    let reason = wait_unready(&a.manager).await;
    eprintln!("not ready: {reason}");
    let refused = a.manager.publish("dave", Event::new("lost")).await;
    assert!(matches!(refused, Err(Error::Broker(_))), "{refused:?}");
    assert_eq!(b.manager.total_connections(), 1, "clients stay connected");

    let restarted = Instant::now();
    redis.restart();
    wait_ready(&a.manager).await;
    wait_ready(&b.manager).await;
    eprintln!(
        "both instances ready {:?} after Redis restarted",
        restarted.elapsed()
    );
    // Restarted empty, Redis lost the history: the stream is told so, and stays open.
    let reset = client.next_event().await;
    assert_eq!(reset.event, sseor::RESET_EVENT, "{reset:?}");
    a.manager
        .publish("dave", Event::new("after"))
        .await
        .unwrap();
    assert_eq!(client.next_event().await.event, "after");
    let metrics = b.manager.render_metrics();
    assert!(
        metrics.contains("sseor_redis_reconnects_total 1\n"),
        "one loss, one reconnect:\n{metrics}"
    );
    assert!(metrics.contains("sseor_ready 1\n"), "{metrics}");
    assert!(
        metrics.contains("sseor_events_delivered_total 3\n"),
        "the events before and after, and the reset between:\n{metrics}"
    );
}

#[tokio::test]
async fn starts_before_redis_and_becomes_ready_when_it_appears() {
    let port = free_port();
    let manager = Manager::builder()
        .broker_url(format!("redis://127.0.0.1:{port}/0"))
        .redis_probe_interval(Duration::from_millis(100))
        .redis_timeout(Duration::from_millis(300))
        .handle_signals(false)
        .build()
        .await
        .expect("an unreachable Redis does not stop the start");
    assert!(manager.readiness().is_err());
    assert!(manager.publish("u", Event::new("early")).await.is_err());

    let redis = RedisServer::start_on(port);
    wait_ready(&manager).await;
    manager.publish("u", Event::new("on time")).await.unwrap();
    drop(redis);
    manager.close().await;
}

#[tokio::test]
async fn a_frozen_redis_is_noticed_and_recovered_from() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let mut client = open_live(&server, "erin", &[]).await;
    wait_for_subscribers(&redis, &user_channel("erin"), "1").await;
    redis.pause();
    let reason = wait_unready(&server.manager).await;
    eprintln!("frozen Redis noticed: {reason}");
    redis.resume();
    wait_ready(&server.manager).await;
    wait_for_subscribers(&redis, &user_channel("erin"), "1").await;
    server
        .manager
        .publish("erin", Event::new("thawed"))
        .await
        .unwrap();
    assert_eq!(client.next_event().await.event, "thawed");
}

#[tokio::test]
async fn credentials_and_urls() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret-pass"]);
    redis.cli(&[
        "-a",
        "s3cret-pass",
        "--no-auth-warning",
        "ACL",
        "SETUSER",
        "alice",
        "on",
        ">alice-pass",
        "~*",
        "&*",
        "+@all",
    ]);
    let port = redis.port;

    for url in [
        format!("redis://127.0.0.1:{port}/0"),
        format!("redis://:wrong-pass@127.0.0.1:{port}/0"),
        format!("redis://alice:not-hers@127.0.0.1:{port}/0"),
    ] {
        let err = Manager::new(&url).await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::Broker(_)), "{url}: {message}");
        assert!(!message.contains("pass"), "a password leaked: {message}");
        eprintln!("{message}");
    }
    for url in [
        format!("redis://:s3cret-pass@127.0.0.1:{port}/0"),
        format!("redis://alice:alice-pass@127.0.0.1:{port}/3"),
    ] {
        let manager = Manager::builder()
            .broker_url(&url)
            .redis_probe_interval(Duration::from_millis(50))
            .handle_signals(false)
            .build()
            .await
            .unwrap();
        wait_ready(&manager).await;
        manager.close().await;
    }
    for url in [
        "redis://",
        "redis://127.0.0.1:notaport/0",
        "redis://host/notadb",
    ] {
        let err = Manager::new(url).await.unwrap_err();
        assert!(matches!(err, Error::InvalidUrl(_)), "{url}: {err}");
    }
}

#[tokio::test]
async fn unix_socket_urls() {
    let redis = RedisServer::start();
    let url = format!("redis+unix://{}", redis.unix_socket().display());
    let server = Server::with(
        Manager::builder()
            .broker_url(url)
            .redis_probe_interval(Duration::from_millis(50)),
    )
    .await;
    wait_ready(&server.manager).await;
    let mut client: Client = open_live(&server, "frank", &[]).await;
    wait_for_subscribers(&redis, &user_channel("frank"), "1").await;
    server
        .manager
        .publish("frank", Event::new("via-socket"))
        .await
        .unwrap();
    assert_eq!(client.next_event().await.event, "via-socket");
}

#[tokio::test]
async fn a_publisher_only_service_reaches_every_instance() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let mut on_a = open_live(&a, "gina", &[]).await;
    let mut on_b = open_live(&b, "hank", &["alerts"]).await;
    wait_for_subscribers(&redis, &user_channel("gina"), "1").await;
    wait_for_subscribers(&redis, &topic_channel("alerts"), "1").await;

    let publisher = sseor::Publisher::new(&redis.url()).await.unwrap();
    let to_gina = publisher
        .publish("gina", Event::new("direct"))
        .await
        .unwrap();
    assert_eq!(to_gina.instances, Some(1));
    publisher
        .publish_to_topic("alerts", Event::new("alert"))
        .await
        .unwrap();
    publisher.publish_to_all(Event::new("all")).await.unwrap();
    assert_eq!(
        position_in(&on_a.next_event().await.id, &user("gina")),
        published_position(&to_gina)
    );
    assert_eq!(on_a.next_event().await.event, "all");
    assert_eq!(on_b.next_event().await.event, "alert");
    assert_eq!(on_b.next_event().await.event, "all");

    assert!(matches!(
        publisher.publish("gina", Event::new("bad\n")).await,
        Err(Error::InvalidEvent(_))
    ));
    assert!(matches!(
        sseor::Publisher::new("memory://").await,
        Err(Error::InvalidUrl(_))
    ));
}

#[tokio::test]
async fn counts_span_instances_and_forget_the_dead() {
    let redis = RedisServer::start();
    let quick = |redis: &RedisServer| {
        redis_builder(&redis.url()).redis_presence_ttl(Duration::from_millis(600))
    };
    let a = Server::with(quick(&redis)).await;
    let b = Server::with(quick(&redis)).await;
    wait_ready(&a.manager).await;
    wait_ready(&b.manager).await;
    let _ivy_a = a.subscribe("ivy", &[]).await;
    let ivy_b = b.subscribe("ivy", &[]).await;
    let _jo_b = b.subscribe("jo", &[]).await;
    b.wait_for_total(2).await;

    let settle = |manager: Manager, user: &'static str, expected: usize| async move {
        guard(async {
            while manager.cluster_connection_count(user).await.ok() != Some(expected) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    };
    settle(a.manager.clone(), "ivy", 2).await;
    settle(a.manager.clone(), "jo", 1).await;
    assert_eq!(a.manager.connection_count("ivy"), 1);
    assert_eq!(a.manager.cluster_total_connections().await.unwrap(), 3);

    drop(ivy_b);
    settle(b.manager.clone(), "ivy", 1).await;

    // An instance that closes says goodbye at once.
    b.manager.close().await;
    settle(a.manager.clone(), "jo", 0).await;
    assert_eq!(a.manager.cluster_total_connections().await.unwrap(), 1);
}

#[tokio::test]
async fn tls_with_a_private_ca_and_a_wrong_certificate() {
    let (redis, tls_port, ca) = RedisServer::start_tls();
    let url = format!("rediss://127.0.0.1:{tls_port}/0");
    let server = Server::with(
        Manager::builder()
            .broker_url(&url)
            .redis_ca_file(&ca)
            .redis_probe_interval(Duration::from_millis(50)),
    )
    .await;
    wait_ready(&server.manager).await;
    let mut client = open_live(&server, "tls-user", &[]).await;
    wait_for_subscribers(&redis, &user_channel("tls-user"), "1").await;
    server
        .manager
        .publish("tls-user", Event::new("encrypted"))
        .await
        .unwrap();
    assert_eq!(client.next_event().await.event, "encrypted");

    let other_ca = ca.with_file_name("other-ca.crt");
    std::fs::write(&other_ca, Ca::new("other-ca").pem()).unwrap();
    for builder in [
        Manager::builder().broker_url(&url).redis_ca_file(&other_ca),
        Manager::builder().broker_url(&url),
    ] {
        let err = builder.handle_signals(false).build().await.unwrap_err();
        eprintln!("{err}");
        assert!(matches!(err, Error::Broker(_)), "{err}");
        assert!(
            err.to_string().contains("certificate") || err.to_string().contains("Issuer"),
            "{err}"
        );
    }
    let missing = Manager::builder()
        .broker_url(&url)
        .redis_ca_file("/nonexistent/ca.pem")
        .build()
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/ca.pem"),
        "{missing}"
    );
}

#[tokio::test]
async fn sentinel_failover_is_followed_by_publishes_and_subscriptions() {
    let master = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let sentinel = sseor_testkit::redis::Sentinel::start(master.port);
    // The sentinel must know the replica before it can fail over to it.
    guard(async {
        while !sentinel
            .cli(&["SENTINEL", "REPLICAS", "mymaster"])
            .contains(&replica.port.to_string())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster/0", sentinel.port);
    let server = Server::with(
        Manager::builder()
            .broker_url(url)
            .redis_probe_interval(Duration::from_millis(100))
            .redis_timeout(Duration::from_millis(500)),
    )
    .await;
    wait_ready(&server.manager).await;
    let mut client = open_live(&server, "sam", &[]).await;
    wait_for_subscribers(&master, &user_channel("sam"), "1").await;
    server
        .manager
        .publish("sam", Event::new("before"))
        .await
        .unwrap();
    assert_eq!(client.next_event().await.event, "before");

    // Refused (NOGOODSLAVE) until the sentinel has seen the replica healthy for a while.
    guard(async {
        while sentinel.cli(&["SENTINEL", "FAILOVER", "mymaster"]) != "OK" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let promoted = replica.port.to_string();
    guard(async {
        while sentinel.master_port() != promoted {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let failed_over = Instant::now();
    // Publishes fail while the instance finds the new master, then succeed there.
    guard(async {
        while server
            .manager
            .publish("sam", Event::new("after"))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    eprintln!(
        "publishing again {:?} after the failover",
        failed_over.elapsed()
    );
    assert_eq!(client.next_event().await.event, "after");
    assert_eq!(replica.cli(&["ROLE"]).lines().next(), Some("master"));

    // The old master, now a replica, goes away: the subscription follows to the new one.
    let mut master = master;
    master.kill();
    // Replication is asynchronous: when the new master holds fewer events than the
    // instance saw, positions would be given twice, so the streams get a reset (and stay
    // open).
    let mut published = false;
    guard(async {
        loop {
            if !published && client_subscribed(&replica, &user_channel("sam")) {
                let settled = server.manager.publish("sam", Event::new("settled"));
                published = settled.await.is_ok();
            }
            let next = tokio::time::timeout(Duration::from_millis(100), client.try_next_event());
            match next.await {
                Err(_) => {}
                Ok(Some(event)) if event.event == "settled" => return,
                Ok(Some(event)) => assert_eq!(event.event, sseor::RESET_EVENT, "{event:?}"),
                Ok(None) => panic!("the stream ended: it should stay open"),
            }
        }
    })
    .await;
}

fn n_of_or_reason(event: &eventsource_stream::Event) -> String {
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    data.get("n")
        .map_or_else(|| data["reason"].to_string(), ToString::to_string)
}

#[tokio::test]
async fn a_client_resumes_on_another_instance_with_nothing_missing_or_twice() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let last = receive_some(&a, &redis, "rita", 3).await;
    wait_for_subscribers(&redis, &user_channel("rita"), "0").await;
    for n in 3..53 {
        a.manager.publish("rita", numbered(n)).await.unwrap();
    }
    b.manager.publish("other", numbered(999)).await.unwrap();
    let url = b.url("/api/v1/sse?user_id=rita");
    let mut client = Client::resume(&url, Some(&last)).await;
    for n in 3..53 {
        assert_eq!(n_of(&client.next_event().await), n);
    }
    wait_for_subscribers(&redis, &user_channel("rita"), "1").await;
    a.manager.publish("rita", numbered(53)).await.unwrap();
    assert_eq!(n_of(&client.next_event().await), 53);
}

#[tokio::test]
async fn history_survives_a_redis_restart_with_append_only_persistence() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let server = instance(&redis).await;
    let last = receive_some(&server, &redis, "paul", 2).await;
    wait_for_subscribers(&redis, &user_channel("paul"), "0").await;
    for n in 2..12 {
        server.manager.publish("paul", numbered(n)).await.unwrap();
    }
    redis.restart();
    wait_ready(&server.manager).await;
    let mut client = Client::resume(&server.url("/api/v1/sse?user_id=paul"), Some(&last)).await;
    let first = client.next_event().await;
    assert_eq!(
        (first.event.as_str(), n_of_or_reason(&first)),
        ("n", "2".to_owned())
    );
    for n in 3..12 {
        assert_eq!(n_of(&client.next_event().await), n);
    }
}

#[tokio::test]
async fn an_emptied_redis_means_a_reset_then_live() {
    let mut redis = RedisServer::start();
    let server = instance(&redis).await;
    let last = receive_some(&server, &redis, "quinn", 2).await;
    redis.restart();
    wait_ready(&server.manager).await;
    let url = server.url("/api/v1/sse?user_id=quinn");
    let mut client = Client::resume(&url, Some(&last)).await;
    let reset = client.next_event().await;
    assert_eq!(reset.event, sseor::RESET_EVENT);
    // The instance may see the new epoch only after this stream opened: then it resets it
    // once more, and the stream stays open.
    let mut published = false;
    guard(async {
        loop {
            if !published && client_subscribed(&redis, &user_channel("quinn")) {
                published = server.manager.publish("quinn", numbered(7)).await.is_ok();
            }
            let next = tokio::time::timeout(Duration::from_millis(100), client.try_next_event());
            match next.await {
                Err(_) => {}
                Ok(Some(event)) if event.event == "n" => return assert_eq!(n_of(&event), 7),
                Ok(Some(event)) => assert_eq!(event.event, sseor::RESET_EVENT, "{event:?}"),
                Ok(None) => panic!("the stream ended: it should stay open"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn redis_history_keeps_what_retention_says() {
    let redis = RedisServer::start();
    let server =
        Server::with(redis_builder(&redis.url()).history(5, Duration::from_secs(3600))).await;
    wait_ready(&server.manager).await;
    let last = receive_some(&server, &redis, "tess", 1).await;
    wait_for_subscribers(&redis, &user_channel("tess"), "0").await;
    // Trimming keeps at least 5; 300 more are well past its slack.
    for n in 1..301 {
        server.manager.publish("tess", numbered(n)).await.unwrap();
    }
    let url = server.url("/api/v1/sse?user_id=tess");
    let mut client = Client::resume(&url, Some(&last)).await;
    assert_eq!(client.next_event().await.event, sseor::RESET_EVENT);
    let history = format!("{}:history", user_channel("tess"));
    let length: usize = redis.cli(&["LLEN", &history]).parse().unwrap();
    assert!(
        (5..=20).contains(&length),
        "the history is trimmed: {length}"
    );

    // A recent position still resumes exactly.
    server.manager.publish("tess", numbered(301)).await.unwrap();
    let recent = client.next_event().await;
    assert_eq!(n_of(&recent), 301);
    drop(client);
    server.manager.publish("tess", numbered(302)).await.unwrap();
    let mut client = Client::resume(&url, Some(&recent.id)).await;
    assert_eq!(n_of(&client.next_event().await), 302);
}

#[tokio::test]
async fn events_published_while_a_subscription_was_down_arrive_on_the_open_stream_from_history() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let mut client = open_live(&a, "gus", &[]).await;
    wait_for_subscribers(&redis, &user_channel("gus"), "1").await;
    b.manager.publish("gus", numbered(0)).await.unwrap();
    let mut received = vec![client.next_event().await];

    // Every subscription connection is cut; B publishes before A is back. The stream stays
    // open: what it missed comes from the history once A is back.
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    for n in 1..=20 {
        b.manager.publish("gus", numbered(n)).await.unwrap();
    }
    for _ in 1..=20 {
        received.push(client.next_event().await);
    }
    wait_for_subscribers(&redis, &user_channel("gus"), "1").await;
    b.manager.publish("gus", numbered(21)).await.unwrap();
    received.push(client.next_event().await);
    let numbers: Vec<u64> = received.iter().map(n_of).collect();
    assert_eq!(numbers, (0..=21).collect::<Vec<_>>());
}

#[tokio::test]
async fn random_comings_and_goings_across_two_instances_lose_nothing() {
    let redis = RedisServer::start();
    crate::common::random_comings_and_goings_on(&redis.url()).await;
}

#[tokio::test]
async fn a_publisher_id_is_sent_once_on_redis_too() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let mut client = open_live(&server, "uma", &[]).await;
    wait_for_subscribers(&redis, &user_channel("uma"), "1").await;
    let first = server
        .manager
        .publish("uma", Event::new("order").with_id("order-9"))
        .await
        .unwrap();
    let again = server
        .manager
        .publish("uma", Event::new("order").with_id("order-9"))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    server
        .manager
        .publish("uma", Event::new("next"))
        .await
        .unwrap();
    assert_eq!(
        position_in(&client.next_event().await.id, &user("uma")),
        published_position(&first)
    );
    assert_eq!(client.next_event().await.event, "next");
}

#[tokio::test]
async fn missed_events_older_than_the_retention_age_mean_a_reset() {
    let redis = RedisServer::start();
    let server =
        Server::with(redis_builder(&redis.url()).history(1000, Duration::from_millis(300))).await;
    wait_ready(&server.manager).await;
    crate::common::missed_events_older_than_the_retention_age_mean_a_reset(&server).await;
}
