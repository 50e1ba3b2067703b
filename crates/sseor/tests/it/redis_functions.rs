//! The publish function as any Redis client calls it (`FCALL sseor_publish`, as the README
//! shows), and what it remembers of sequences between calls, against a real
//! `redis-server`.

use futures_util::future::join_all;
use sseor::Position;
use sseor_testkit::redis::{RedisServer, wait_for_subscribers};

use crate::common::{
    instance, n_of, numbered, open_live, position_in, published_position, user, user_channel,
};

/// Publishes `json` to `user` with `redis-cli`, as the README's wire format says; returns
/// what the function answered.
fn fcall(redis: &RedisServer, who: &str, json: &str, more: &[&str]) -> String {
    let sequence = user_channel(who);
    let history = format!("{sequence}:history");
    let mut args = vec!["FCALL", "sseor_publish", "2", &sequence, &history, json];
    args.extend_from_slice(more);
    redis.cli(&args)
}

/// The position in the answer `EPOCH-SEQ RECEIVERS` of the publish function (both numbers
/// in decimal).
fn answered_position(answer: &str) -> Position {
    let parsed = answer.split_once(' ').and_then(|(position, _)| {
        let (epoch, seq) = position.split_once('-')?;
        Some(Position::new(epoch.parse().ok()?, seq.parse().ok()?))
    });
    parsed.unwrap_or_else(|| panic!("not an answer of the publish function: {answer:?}"))
}

fn numbered_json(n: u64) -> String {
    format!(r#"{{"type":"n","data":{{"n":{n}}}}}"#)
}

#[tokio::test]
async fn a_redis_client_publishes_with_the_function_and_streams_get_it_in_order() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let mut client = open_live(&server, "ivy", &[]).await;
    wait_for_subscribers(&redis, &user_channel("ivy"), "1").await;
    let first = fcall(&redis, "ivy", &numbered_json(1), &[]);
    assert!(first.ends_with(" 1"), "one instance received it: {first:?}");
    let second = fcall(&redis, "ivy", &numbered_json(2), &["1000", "3600000"]);
    let (first, second) = (answered_position(&first), answered_position(&second));
    assert_eq!(second, Position::new(first.epoch(), first.seq() + 1));
    for (n, position) in [(1, first), (2, second)] {
        let event = client.next_event().await;
        assert_eq!(n_of(&event), n);
        assert_eq!(position_in(&event.id, &user("ivy")), position);
    }
    // The history holds what was published, message for message.
    let history = redis.cli(&[
        "LRANGE",
        &format!("{}:history", user_channel("ivy")),
        "0",
        "-1",
    ]);
    assert_eq!(history.lines().count(), 2, "{history}");
    assert!(
        history.starts_with(&format!(r#"{{"p":[{},1,"#, first.epoch())),
        "{history}"
    );
}

#[tokio::test]
async fn bad_arguments_get_an_error_and_take_no_number() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let good = numbered_json(1);
    for (json, more) in [
        ("not json", vec![]),
        (good.as_str(), vec!["many"]),
        (good.as_str(), vec!["1000", "an hour"]),
        (good.as_str(), vec!["1000", "3600000", "1796035318x00"]),
    ] {
        let answer = fcall(&redis, "jay", json, &more);
        assert!(answer.contains("ERR sseor"), "{json} {more:?}: {answer:?}");
    }
    assert_eq!(
        redis.cli(&["EXISTS", &user_channel("jay")]),
        "0",
        "no number taken"
    );
    let published = server.manager.publish("jay", numbered(1)).await.unwrap();
    assert_eq!(published_position(&published).seq(), 1);
}

#[tokio::test]
async fn a_sequence_changed_behind_what_the_function_remembers_is_read_anew() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let sequence = user_channel("kim");
    let history = format!("{sequence}:history");
    let first = published_position(&server.manager.publish("kim", numbered(1)).await.unwrap());
    // What a slot that moved to another master and came back may bring: the same key with
    // another epoch and number. The function still remembers the first epoch.
    let other = first.epoch().wrapping_add(7).max(1);
    redis.cli(&["DEL", &sequence, &history]);
    redis.cli(&[
        "HSET",
        &sequence,
        "e",
        &format!("0000000000000:{other}"),
        &other.to_string(),
        "41",
    ]);
    let next = published_position(&server.manager.publish("kim", numbered(2)).await.unwrap());
    assert_eq!(next, Position::new(other, 42));
    // Lost altogether while remembered: a new epoch, from 1.
    redis.cli(&["DEL", &sequence, &history]);
    let renewed = published_position(&server.manager.publish("kim", numbered(3)).await.unwrap());
    assert_eq!(renewed.seq(), 1);
    assert!(
        ![first.epoch(), other].contains(&renewed.epoch()),
        "{renewed:?}"
    );
    assert_eq!(
        redis.cli(&["HLEN", &sequence]),
        "2",
        "the epoch and one number, no other"
    );
}

#[tokio::test]
async fn a_sequence_of_the_older_form_goes_on_from_its_number() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let sequence = user_channel("lou");
    let history = format!("{sequence}:history");
    // As an earlier version kept it: the epoch in `e`, the number in `s`, a stream.
    redis.cli(&[
        "HSET",
        &sequence,
        "e",
        "31337",
        "s",
        "7",
        "t",
        "1796035318000",
    ]);
    redis.cli(&["XADD", &history, "7-1796035318000", "e", &numbered_json(7)]);
    let answer = fcall(&redis, "lou", &numbered_json(8), &[]);
    assert_eq!(answered_position(&answer), Position::new(31337, 8));
    assert_eq!(redis.cli(&["TYPE", &history]), "list");
    assert_eq!(redis.cli(&["LLEN", &history]), "1");
    let published = server.manager.publish("lou", numbered(9)).await.unwrap();
    assert_eq!(published_position(&published), Position::new(31337, 9));
}

#[tokio::test]
async fn publishes_made_at_once_go_in_batches_and_each_gets_its_own_position() {
    let redis = RedisServer::start();
    let server = instance(&redis).await;
    let users = ["ann", "bob", "cat"];
    let mut clients = Vec::new();
    for who in users {
        clients.push(open_live(&server, who, &[]).await);
        wait_for_subscribers(&redis, &user_channel(who), "1").await;
    }
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let publishes = (0..300u64).map(|n| {
        let who = users[usize::try_from(n).unwrap() % users.len()];
        server.manager.publish(who, numbered(n))
    });
    let answered: Vec<Position> = join_all(publishes)
        .await
        .into_iter()
        .map(|published| published_position(&published.unwrap()))
        .collect();
    for (i, (who, client)) in users.iter().zip(&mut clients).enumerate() {
        let mut expected_seq = None;
        for _ in 0..100 {
            let event = client.next_event().await;
            let n = n_of(&event);
            assert_eq!(
                usize::try_from(n).unwrap() % users.len(),
                i,
                "{who} got {n}"
            );
            let position = position_in(&event.id, &user(who));
            assert_eq!(
                position,
                answered[usize::try_from(n).unwrap()],
                "the answer of {n}"
            );
            let seq = expected_seq.unwrap_or(position.seq());
            assert_eq!(position.seq(), seq, "{who}'s numbers follow one another");
            expected_seq = Some(seq + 1);
        }
    }
    let stats = redis.cli(&["INFO", "commandstats"]);
    let calls: u64 = stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_fcall:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or_else(|| panic!("no FCALL counted: {stats}"));
    assert!(calls < 150, "300 publishes made at once took {calls} calls");
}

#[tokio::test]
async fn a_batch_with_one_bad_event_publishes_none() {
    let redis = RedisServer::start();
    let _server = instance(&redis).await;
    let (ann, bob) = (user_channel("ann"), user_channel("bob"));
    let (ann_history, bob_history) = (format!("{ann}:history"), format!("{bob}:history"));
    let good = numbered_json(1);
    let batch = |second: &str| {
        redis.cli(&[
            "FCALL",
            "sseor_publish_batch",
            "4",
            &ann,
            &ann_history,
            &bob,
            &bob_history,
            &good,
            second,
            "1000",
            "3600000",
            "1796035318000",
        ])
    };
    let answer = batch("not an event");
    assert!(answer.contains("ERR sseor"), "{answer:?}");
    assert_eq!(
        redis.cli(&["EXISTS", &ann, &ann_history, &bob, &bob_history]),
        "0"
    );
    let answer = batch(&good);
    let positions: Vec<Position> = answer.lines().map(answered_position).collect();
    assert_eq!(
        positions.iter().map(|p| p.seq()).collect::<Vec<_>>(),
        [1, 1],
        "{answer}"
    );
}
