//! Redis, which the Redis variants share between their instances.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::process::Command;

use super::free_port;
use crate::process::Process;

/// A `redis-server` without persistence on a free port of 127.0.0.1, and its URL.
pub(crate) async fn start_redis() -> Result<(Process, String), String> {
    let port = free_port()?;
    let mut redis = Process::spawn(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null()),
        "redis-server (apt-get install redis-server)",
    )?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() >= deadline || !matches!(redis.child().try_wait(), Ok(None)) {
            return Err(format!("redis-server did not start on port {port}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((redis, format!("redis://127.0.0.1:{port}/0")))
}
