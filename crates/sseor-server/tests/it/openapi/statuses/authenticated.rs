//! A server with authentication and a publish rate of one a second: each operation
//! refused without a credential (401) and with one that does not grant it (403), a
//! ticket issued, the backend's operations served to a publisher, and a publisher over
//! its rate (429).

use serde_json::json;
use sseor_testkit::http;
use sseor_testkit::server::Server;

use super::super::start_authenticated;
use super::asking::{
    Answer, ask, ask_backend_queries, ask_every_backend_operation, ask_stream, bearer, get,
    post_json, publisher_bodies, token,
};

pub(super) async fn answers() -> Vec<Answer> {
    let server = start_authenticated(&["--publish-rate", "1", "--publish-burst", "1"]).await;
    let subscriber = bearer(&token("alice", json!({"topics": ["news"]})));
    let mut answers = Vec::new();

    let mut open = Vec::new();
    answers.push(ask_stream(get(&server, "/api/v1/sse"), &mut open).await);
    let other_user = get(&server, "/api/v1/sse?user_id=bob").header("authorization", &subscriber);
    answers.push(ask_stream(other_user, &mut open).await);

    let tickets = "/api/v1/tickets";
    answers.push(ask("POST", tickets, http().post(server.url(tickets))).await);
    let issued = http()
        .post(server.url(tickets))
        .header("authorization", &subscriber);
    answers.push(ask("POST", tickets, issued).await);

    answers.extend(ask_every_backend_operation(&server, None).await);
    answers.extend(ask_every_backend_operation(&server, Some(&subscriber)).await);
    // The backend's queries, which the publish rate does not count.
    let backend = bearer(&token("backend", json!({"publish": true})));
    answers.extend(ask_backend_queries(&server, Some(&backend)).await);
    answers.extend(over_the_rate(&server).await);
    answers
}

/// Each publisher's operation sent twice by a publisher of its own: served, then 429.
async fn over_the_rate(server: &Server) -> Vec<Answer> {
    let mut answers = Vec::new();
    for (index, (path, body)) in publisher_bodies().into_iter().enumerate() {
        let claims = json!({"publish": true});
        let publisher = bearer(&token(&format!("publisher-{index}"), claims));
        for _ in 0..2 {
            let publishing =
                post_json(server, path, body.clone()).header("authorization", &publisher);
            answers.push(ask("POST", path, publishing).await);
        }
    }
    answers
}
