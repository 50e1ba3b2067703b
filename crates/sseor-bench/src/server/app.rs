//! An application that embeds the sseor library (the `sseor-app` binary) under test,
//! served one of three ways: `sseor::serve`, `Manager::serve` or `axum::serve`.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::{Channel, PublishApi, Server, ServerOptions, Target};
use crate::process::Process;

/// How `target` serves the application (`sseor-app --serve`), or `None` for a target
/// that is not the application.
pub(super) fn serve_flag(target: Target) -> Option<&'static str> {
    match target {
        Target::AppSseorServe => Some("sseor"),
        Target::AppManagerServe => Some("manager"),
        Target::AppAxumServe => Some("axum"),
        _ => None,
    }
}

/// The application's own stream route for stream `index` on `channel`.
pub(super) fn stream_path(channel: Channel, index: usize) -> String {
    match channel {
        Channel::Broadcast => format!("/events?user=u{index}"),
        Channel::Own(_) => format!("/events?user={}", channel.name()),
    }
}

/// Starts the application on a free port, served as `target` says; events are published
/// through the sseor API it merges into its router.
pub(super) async fn start(target: Target, options: &ServerOptions) -> Result<Server, String> {
    let serve = serve_flag(target).ok_or("not an application target")?;
    let (process, port) = spawn_listening(&options.app, &["--port", "0", "--serve", serve]).await?;
    Ok(Server::new(
        target,
        vec![process],
        port,
        PublishApi::sseor(port),
    ))
}

/// Starts `binary` with `args` and reads its port from the `listening on ADDR` line it
/// prints on stdout.
pub(super) async fn spawn_listening(
    binary: &Path,
    args: &[&str],
) -> Result<(Process, u16), String> {
    let what = binary.display().to_string();
    let mut process = Process::spawn(
        Command::new(binary)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
        &what,
    )?;
    let stdout = process.child().stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let Some(address) = line.strip_prefix("listening on ") else {
            continue;
        };
        let port = address
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .ok_or_else(|| format!("unexpected address {address}"))?;
        // Keep draining its output so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        return Ok((process, port));
    }
    Err(format!("{what} exited before it listened"))
}
