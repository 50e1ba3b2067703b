//! The `sseor` library serving on a real socket in the test's own process: a manager, its
//! HTTP API and its stream route, and clients that reach them over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use sseor::{Builder, Manager};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::hang::guard;
use crate::sse::Client;

/// A manager serving `sseor::api::router` and its own routes on 127.0.0.1.
pub struct Server {
    /// The manager that serves.
    pub manager: Manager,
    /// Where it accepts connections.
    pub addr: SocketAddr,
    /// The serving task: it ends once the manager is closed.
    pub serving: JoinHandle<sseor::Result<()>>,
}

impl Server {
    /// A server with the default settings.
    pub async fn start() -> Self {
        Self::with(Manager::builder()).await
    }

    /// A server built from `builder`, which leaves the process's signals alone.
    pub async fn with(builder: Builder) -> Self {
        Self::with_manager(builder.handle_signals(false).build().await.unwrap()).await
    }

    /// A server for a manager already built.
    pub async fn with_manager(manager: Manager) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = sseor::api::router(&manager).merge(manager.router());
        let serving = tokio::spawn({
            let manager = manager.clone();
            async move { manager.serve(listener, app).await }
        });
        Self {
            manager,
            addr,
            serving,
        }
    }

    /// `http://ADDR` and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Opens `/api/v1/sse` for `user_id` and `topics`.
    pub async fn subscribe(&self, user_id: &str, topics: &[&str]) -> Client {
        let mut url = self.url(&format!("/api/v1/sse?user_id={user_id}"));
        for topic in topics {
            url.push_str(&format!("&topic={topic}"));
        }
        Client::connect(&url).await
    }

    /// Polls until the manager counts `expected` connections.
    pub async fn wait_for_total(&self, expected: usize) {
        guard(async {
            while self.manager.total_connections() != expected {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}
