//! sseor under test: one process with the embedded broker, or two on one Redis.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::{PublishApi, Server, ServerOptions, Target, start_redis};
use crate::process::Process;

/// Starts `target` (`Sseor` or `SseorRedis`): with Redis, streams are on the second
/// instance and publishes go to the first.
pub(super) async fn start(target: Target, options: &ServerOptions) -> Result<Server, String> {
    if target == Target::Sseor {
        let (process, port) = start_sseor(&options.server, &[]).await?;
        return Ok(Server::new(
            target,
            vec![process],
            port,
            PublishApi::sseor(port),
        ));
    }
    let (redis, url) = start_redis().await?;
    let env = [("REDIS_URL", url.as_str())];
    let (publishing, publish_port) = start_sseor(&options.server, &env).await?;
    let (streaming, stream_port) = start_sseor(&options.server, &env).await?;
    let mut server = Server::new(
        target,
        vec![publishing, streaming],
        stream_port,
        PublishApi::sseor(publish_port),
    );
    server._infrastructure.push(redis);
    server.redis_url = Some(url);
    Ok(server)
}

/// Starts an sseor server on a free port, with `env`, and reads the port from its log.
pub(crate) async fn start_sseor(
    binary: &Path,
    env: &[(&str, &str)],
) -> Result<(Process, u16), String> {
    let mut process = Process::spawn(
        Command::new(binary)
            .args(["--port", "0", "--log-format", "json"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
        &binary.display().to_string(),
    )?;
    let stdout = process.child().stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(address) = log["fields"]["address"].as_str() {
            let port = address
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse().ok())
                .ok_or_else(|| format!("unexpected address {address}"))?;
            // Keep draining the log so the server never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((process, port));
        }
    }
    Err("the server exited before it listened".into())
}
