//! A manager that is shutting down, served by the application's own `axum::serve`.

use std::time::Duration;

use sseor_testkit::{guard, http};

use super::asking::{Answer, ask};

/// `/healthz` of a manager that is shutting down, served by the application's own
/// `axum::serve`: the `sseor` server stops taking requests as soon as it shuts down, so
/// only an application that serves [`sseor::api::router`] itself still answers them.
pub(super) async fn answers() -> Vec<Answer> {
    let manager = sseor::Manager::builder()
        .handle_signals(false)
        .build()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    let app: axum::Router = sseor::api::router(&manager);
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let closing = tokio::spawn({
        let manager = manager.clone();
        async move { manager.close().await }
    });
    let answer = guard(async {
        loop {
            let answer = ask("GET", "/healthz", http().get(&url)).await;
            if answer["status"] == 503 {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    guard(closing).await.unwrap();
    serving.abort();
    vec![answer]
}
