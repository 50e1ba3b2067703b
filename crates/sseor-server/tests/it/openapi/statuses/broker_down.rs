//! A server on a Redis that is then killed: what needs the broker answers 503 (tickets
//! included: the server authenticates), `/readyz` too.

use std::time::Duration;

use serde_json::json;
use sseor_testkit::redis::RedisServer;
use sseor_testkit::{guard, http};

use super::super::{PUBLISH_TOKEN, start_authenticated};
use super::asking::{Answer, ask, ask_every_backend_operation, ask_stream, bearer, get, token};

pub(super) async fn answers() -> Vec<Answer> {
    let mut redis = RedisServer::start();
    let server = start_authenticated(&["--redis-url", &redis.url()]).await;
    redis.kill();
    let subscriber = bearer(&token("alice", json!({})));
    let mut answers = Vec::new();
    // Not ready once the instance has noticed.
    let readyz = guard(async {
        loop {
            let answer = ask("GET", "/readyz", get(&server, "/readyz")).await;
            if answer["status"] == 503 {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    answers.push(readyz);
    let sse = get(&server, "/api/v1/sse").header("authorization", &subscriber);
    answers.push(ask_stream(sse, &mut Vec::new()).await);
    let tickets = http()
        .post(server.url("/api/v1/tickets"))
        .header("authorization", &subscriber);
    answers.push(ask("POST", "/api/v1/tickets", tickets).await);
    let publisher = bearer(PUBLISH_TOKEN);
    answers.extend(ask_every_backend_operation(&server, Some(&publisher)).await);
    answers
}
