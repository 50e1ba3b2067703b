//! Lifecycle webhooks end to end: real `sseor` processes, on the embedded broker or on one
//! real Redis, whose users come and go over real streams, and a receiver that checks the
//! signature of every request. What arrives is compared as a whole once the grace period
//! (and, for a killed instance, the presence TTL) has passed, so that a change sent twice
//! or one that should not have been sent at all is seen.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use sseor_testkit::redis::RedisServer;
use sseor_testkit::server::{Server, listening_command};
use sseor_testkit::webhook::{Answer, Receiver};
use sseor_testkit::{free_port, guard, http};

use crate::SSEOR;
use crate::stream::Stream;
use crate::webhook::SECRET;

/// The presence TTL of the instances on Redis: a killed one is found out after it.
const PRESENCE_TTL: Duration = Duration::from_secs(1);

/// A change as the receiver got it: its `type` and its user or topic.
type Change = (String, String);

/// How one test's servers are set up.
struct Setup<'a> {
    /// Where the webhook POSTs to.
    url: String,
    grace: Duration,
    redis: Option<&'a RedisServer>,
    /// `SSEOR_WEBHOOK_TIMEOUT`, when not the default.
    webhook_timeout: Option<&'a str>,
}

impl Setup<'_> {
    /// An `sseor` with the webhook, short lifecycle settings and, when given, Redis.
    async fn server(&self) -> Server {
        let url = self.url.as_str();
        let mut command = listening_command(SSEOR);
        let grace = format!("{}ms", self.grace.as_millis());
        let ttl = format!("{}ms", PRESENCE_TTL.as_millis());
        command.envs([
            ("SSEOR_WEBHOOK_URL", url),
            ("SSEOR_WEBHOOK_SECRET", SECRET),
            ("SSEOR_LIFECYCLE_GRACE", &grace),
            ("SSEOR_PRESENCE_TTL", &ttl),
        ]);
        if let Some(timeout) = self.webhook_timeout {
            command.env("SSEOR_WEBHOOK_TIMEOUT", timeout);
        }
        if let Some(redis) = self.redis {
            command.args(["--redis-url", &redis.url()]);
        }
        Server::spawn(command).await
    }

    /// Long enough for any change that is due to have been sent: the grace period, and
    /// the webhook's batching and a request, with room to spare.
    fn quiet(&self) -> Duration {
        self.grace + Duration::from_millis(1500)
    }
}

/// `user` streaming `topic` on `server`, once the stream has settled.
async fn open(server: &Server, user: &str, topic: &str) -> Stream {
    Stream::open(&server.sse_url(user, &[topic]), None).await
}

/// Closes `stream` and waits until `server` no longer counts it.
async fn close(server: &Server, stream: Stream, user: &str) {
    drop(stream);
    server.wait_for_connections(user, (0, 0)).await;
}

/// `(type, user or topic)` of each of `changes`, sorted.
fn summary(changes: &[Value]) -> Vec<Change> {
    let mut summary: Vec<Change> = changes
        .iter()
        .map(|change| {
            let kind = change["type"].as_str().unwrap_or_default().to_owned();
            let subject = change["user_id"]
                .as_str()
                .or(change["topic"].as_str())
                .unwrap_or_default()
                .to_owned();
            (kind, subject)
        })
        .collect();
    summary.sort();
    summary
}

/// The changes `user` going online (`true`) or offline, alone in `topic`, makes.
fn comings_or_goings(user: &str, topic: &str, online: bool) -> Vec<Change> {
    let (of_user, of_topic) = if online {
        ("user.online", "topic.occupied")
    } else {
        ("user.offline", "topic.vacated")
    };
    let mut changes = vec![
        (of_user.to_owned(), user.to_owned()),
        (of_topic.to_owned(), topic.to_owned()),
    ];
    changes.sort();
    changes
}

/// Waits until the receiver accepted as many changes as `expected` holds, then for `quiet`
/// more, and checks that exactly `expected` arrived (repeats dropped by id), every request
/// signed.
async fn expect_changes(receiver: &Receiver, expected: &[Change], quiet: Duration) {
    receiver.wait_for_changes(expected.len()).await;
    tokio::time::sleep(quiet).await;
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(summary(&receiver.accepted_changes()), expected);
    assert_every_request_signed(receiver);
}

/// Every request so far came as JSON with a valid signature.
fn assert_every_request_signed(receiver: &Receiver) {
    for request in receiver.requests() {
        assert!(
            request.signature_valid,
            "a request's signature does not verify: {:?} over {:?}",
            request.signature, request.body
        );
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
    }
}

/// The value of the counter `name` in the server's `/metrics`.
async fn counter(server: &Server, name: &str) -> u64 {
    let response = guard(http().get(server.url("/metrics")).send()).await;
    let text = guard(response.unwrap().text()).await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no counter {name} in\n{text}"))
}

/// Waits until the counter `name` of `server` reaches `at_least`.
async fn wait_for_counter(server: &Server, name: &str, at_least: u64) {
    guard(async {
        while counter(server, name).await < at_least {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Waits until Redis lists `count` instances holding streams of `target` (`user:ID` or
/// `topic:NAME`).
async fn wait_for_holders(redis: &RedisServer, target: &str, count: usize) {
    let key = format!("sseor:{{{target}}}:holders");
    guard(async {
        while redis.cli(&["SCARD", &key]).trim() != count.to_string() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn one_server_posts_signed_arrivals_then_departures_after_the_grace_and_counts_them() {
    let receiver = Receiver::start(SECRET).await;
    let setup = Setup {
        url: receiver.url(),
        grace: Duration::from_millis(700),
        redis: None,
        webhook_timeout: None,
    };
    let server = setup.server().await;
    let stream = open(&server, "ada", "room").await;
    let online = comings_or_goings("ada", "room", true);
    assert_eq!(summary(&receiver.wait_for_changes(2).await), online);

    drop(stream);
    let closed_at = tokio::time::Instant::now();
    let changes = receiver.wait_for_changes(4).await;
    assert!(
        closed_at.elapsed() >= setup.grace,
        "the departures came before the grace period ended"
    );
    let mut expected = online;
    expected.extend(comings_or_goings("ada", "room", false));
    expect_changes(&receiver, &expected, setup.quiet()).await;
    assert_eq!(
        summary(&changes[2..]),
        comings_or_goings("ada", "room", false)
    );

    let sent: Vec<Value> = receiver
        .requests()
        .into_iter()
        .flat_map(|request| request.changes)
        .collect();
    let ids: HashSet<&str> = sent.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), sent.len(), "ids repeat or are missing: {sent:?}");
    assert!(sent.iter().all(|change| change["at"].is_u64()), "{sent:?}");
    wait_for_counter(&server, "sseor_webhook_changes_delivered_total", 4).await;
    assert_eq!(
        counter(&server, "sseor_webhook_changes_delivered_total").await,
        4
    );
    assert_eq!(
        counter(&server, "sseor_webhook_requests_failed_total").await,
        0
    );
}

#[tokio::test]
async fn a_user_on_two_servers_comes_online_and_goes_offline_once() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(SECRET).await;
    let setup = Setup {
        url: receiver.url(),
        grace: Duration::from_millis(500),
        redis: Some(&redis),
        webhook_timeout: None,
    };
    let a = setup.server().await;
    let b = setup.server().await;
    let on_a = open(&a, "ada", "room").await;
    let online = comings_or_goings("ada", "room", true);
    assert_eq!(summary(&receiver.wait_for_changes(2).await), online);
    let on_b = open(&b, "ada", "room").await;
    wait_for_holders(&redis, "user:ada", 2).await;
    close(&a, on_a, "ada").await;
    wait_for_holders(&redis, "user:ada", 1).await;
    expect_changes(&receiver, &online, setup.quiet()).await;

    close(&b, on_b, "ada").await;
    let mut expected = online;
    expected.extend(comings_or_goings("ada", "room", false));
    expect_changes(&receiver, &expected, setup.quiet()).await;
}

#[tokio::test]
async fn a_reload_within_the_grace_on_either_server_posts_nothing() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(SECRET).await;
    let setup = Setup {
        url: receiver.url(),
        grace: Duration::from_secs(2),
        redis: Some(&redis),
        webhook_timeout: None,
    };
    let a = setup.server().await;
    let b = setup.server().await;
    let stream = open(&a, "ada", "room").await;
    let online = comings_or_goings("ada", "room", true);
    assert_eq!(summary(&receiver.wait_for_changes(2).await), online);

    // A reload onto the same server, then one onto the other.
    close(&a, stream, "ada").await;
    let stream = open(&a, "ada", "room").await;
    close(&a, stream, "ada").await;
    let stream = open(&b, "ada", "room").await;
    expect_changes(&receiver, &online, setup.quiet()).await;
    wait_for_holders(&redis, "user:ada", 1).await;

    // The departure that follows is told: the webhook was listening all along.
    close(&b, stream, "ada").await;
    let mut expected = online;
    expected.extend(comings_or_goings("ada", "room", false));
    expect_changes(&receiver, &expected, setup.quiet()).await;
}

#[tokio::test]
async fn a_reload_within_the_grace_on_the_embedded_broker_posts_nothing() {
    let receiver = Receiver::start(SECRET).await;
    let setup = Setup {
        url: receiver.url(),
        grace: Duration::from_secs(2),
        redis: None,
        webhook_timeout: None,
    };
    let server = setup.server().await;
    let stream = open(&server, "ada", "room").await;
    let online = comings_or_goings("ada", "room", true);
    assert_eq!(summary(&receiver.wait_for_changes(2).await), online);
    close(&server, stream, "ada").await;
    let _reloaded = open(&server, "ada", "room").await;
    expect_changes(&receiver, &online, setup.quiet()).await;
}

#[tokio::test]
async fn a_survivor_posts_the_departures_of_a_killed_server_once() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(SECRET).await;
    let setup = Setup {
        url: receiver.url(),
        grace: Duration::from_millis(500),
        redis: Some(&redis),
        webhook_timeout: None,
    };
    let mut doomed = setup.server().await;
    let survivor = setup.server().await;
    let _stream = open(&doomed, "ada", "room").await;
    let online = comings_or_goings("ada", "room", true);
    assert_eq!(summary(&receiver.wait_for_changes(2).await), online);

    doomed.signal("KILL");
    doomed.wait_exit().await;
    let mut expected = online;
    expected.extend(comings_or_goings("ada", "room", false));
    expect_changes(&receiver, &expected, PRESENCE_TTL * 3).await;
    wait_for_holders(&redis, "user:ada", 0).await;
    assert_eq!(
        counter(&survivor, "sseor_webhook_changes_delivered_total").await,
        2,
        "the survivor must be the one that told"
    );
}

#[tokio::test]
async fn after_redis_restarts_empty_nothing_is_posted_and_later_departures_still_are() {
    let mut redis = RedisServer::start();
    let receiver = Receiver::start(SECRET).await;
    let setup = Setup {
        url: receiver.url(),
        grace: Duration::from_millis(500),
        redis: Some(&redis),
        webhook_timeout: None,
    };
    let a = setup.server().await;
    let b = setup.server().await;
    let ada = open(&a, "ada", "room").await;
    let bea = open(&b, "bea", "room").await;
    let mut expected = comings_or_goings("ada", "room", true);
    expected.push(("user.online".to_owned(), "bea".to_owned()));
    receiver.wait_for_changes(3).await;

    drop(setup);
    redis.restart();
    // Each instance writes what it holds again, without a word to the webhook.
    wait_for_holders(&redis, "user:ada", 1).await;
    wait_for_holders(&redis, "user:bea", 1).await;
    wait_for_holders(&redis, "topic:room", 2).await;
    let quiet = Duration::from_millis(2000);
    expect_changes(&receiver, &expected, quiet).await;

    close(&a, ada, "ada").await;
    expected.push(("user.offline".to_owned(), "ada".to_owned()));
    expect_changes(&receiver, &expected, quiet).await;
    close(&b, bea, "bea").await;
    expected.push(("user.offline".to_owned(), "bea".to_owned()));
    expected.push(("topic.vacated".to_owned(), "room".to_owned()));
    expect_changes(&receiver, &expected, quiet).await;
}

#[tokio::test]
async fn changes_reach_a_receiver_that_was_down_at_first() {
    let port = free_port();
    let setup = Setup {
        url: format!("http://127.0.0.1:{port}/hooks"),
        grace: Duration::from_millis(500),
        redis: None,
        webhook_timeout: None,
    };
    let server = setup.server().await;
    let _stream = open(&server, "ada", "room").await;
    wait_for_counter(&server, "sseor_webhook_requests_failed_total", 1).await;

    let receiver = Receiver::start_on(port, SECRET).await;
    let online = comings_or_goings("ada", "room", true);
    expect_changes(&receiver, &online, setup.quiet()).await;
    assert!(
        counter(&server, "sseor_webhook_changes_failed_total").await == 0,
        "nothing given up"
    );
}

#[tokio::test]
async fn changes_answered_500_are_sent_again_with_the_same_ids_until_a_200() {
    let receiver = Receiver::start(SECRET).await;
    receiver.answer_next(&[Answer::Status(500), Answer::Status(500)]);
    let setup = Setup {
        url: receiver.url(),
        grace: Duration::from_millis(500),
        redis: None,
        webhook_timeout: None,
    };
    let server = setup.server().await;
    let _stream = open(&server, "ada", "room").await;
    let online = comings_or_goings("ada", "room", true);
    expect_changes(&receiver, &online, setup.quiet()).await;

    let requests = receiver.requests();
    let statuses: Vec<u16> = requests.iter().map(|request| request.status).collect();
    assert_eq!(&statuses[..3], [500, 500, 200], "{statuses:?}");
    let ids = |index: usize| -> Vec<String> {
        let changes = &requests[index].changes;
        changes.iter().map(|c| c["id"].to_string()).collect()
    };
    // A batch is sent again whole; the changes seen meanwhile wait behind it.
    assert_eq!(ids(0), ids(1));
    assert_eq!(ids(0), ids(2));
    assert_eq!(
        counter(&server, "sseor_webhook_requests_failed_total").await,
        2
    );
}

#[tokio::test]
async fn changes_whose_answer_came_too_late_arrive_again_with_the_same_ids() {
    let receiver = Receiver::start(SECRET).await;
    // Acted on, then answered after the webhook's timeout: the answer is lost.
    receiver.answer_next(&[Answer::Late(200, Duration::from_secs(2))]);
    let setup = Setup {
        url: receiver.url(),
        grace: Duration::from_millis(500),
        redis: None,
        webhook_timeout: Some("300ms"),
    };
    let server = setup.server().await;
    let _stream = open(&server, "ada", "room").await;
    let online = comings_or_goings("ada", "room", true);
    let requests = receiver.wait_for_requests(2).await;
    expect_changes(&receiver, &online, setup.quiet()).await;
    let ids = |request: &sseor_testkit::webhook::Received| -> Vec<String> {
        request
            .changes
            .iter()
            .map(|c| c["id"].to_string())
            .collect()
    };
    assert_eq!(ids(&requests[0]), ids(&requests[1]), "sent twice, same ids");
    assert_eq!(requests[0].changes.len(), 2, "{:?}", requests[0].changes);
}
