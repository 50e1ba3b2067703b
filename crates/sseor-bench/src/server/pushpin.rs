//! Pushpin under test: its processes, and the origin behind it served inside this process.

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;

use super::{PublishApi, Server, ServerOptions, Target, free_port, wait_for_port};
use crate::process::Process;
use crate::temp_dir::TempDir;

/// Starts the origin and Pushpin in front of it.
pub(super) async fn start(options: &ServerOptions) -> Result<Server, String> {
    let dir = TempDir::new("pushpin")?;
    let origin = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("origin: {e}"))?;
    let origin_port = origin.local_addr().map_err(|e| e.to_string())?.port();
    let origin = tokio::spawn(serve_origin(origin));
    let ports: Vec<String> = (0..5)
        .map(|_| free_port().map(|p| p.to_string()))
        .collect::<Result<_, _>>()?;
    let dir_text = dir.root().display().to_string();
    let values = [
        ("DIR", dir_text.as_str()),
        ("HTTP_PORT", &ports[0]),
        ("PUBLISH_PORT", &ports[1]),
        ("PUSH_PORT", &ports[2]),
        ("SUB_PORT", &ports[3]),
        ("COMMAND_PORT", &ports[4]),
        ("ORIGIN_PORT", &origin_port.to_string()),
    ];
    dir.write(&options.peers.join("pushpin.conf"), "pushpin.conf", &values)?;
    dir.write(
        &options.peers.join("pushpin.routes"),
        "pushpin.routes",
        &values,
    )?;
    for sub in ["run", "log"] {
        std::fs::create_dir_all(dir.path(sub)).map_err(|e| e.to_string())?;
    }
    let process = Process::spawn(
        Command::new("pushpin")
            .arg("--config")
            .arg(dir.path("pushpin.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "pushpin (apt-get install pushpin)",
    )?;
    let stream_port: u16 = ports[0].parse().map_err(|_| "port")?;
    wait_for_port(stream_port, "pushpin").await?;
    wait_for_port(ports[1].parse().map_err(|_| "port")?, "pushpin-handler").await?;
    let publish = PublishApi::Pushpin(format!("http://127.0.0.1:{}/publish/", ports[1]));
    let mut server = Server::new(Target::Pushpin, vec![process], stream_port, publish);
    server.origin = Some(origin);
    server._dirs.push(dir);
    Ok(server)
}

/// The origin behind Pushpin: answers every request for `/sub/CHANNEL` with an empty
/// event stream that Pushpin holds open on channel CHANNEL (keep-alive, several requests
/// per connection).
async fn serve_origin(listener: TcpListener) {
    while let Ok((mut socket, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                pending.drain(..end + 4);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let channel = path.rsplit('/').next().unwrap_or("none");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nGrip-Hold: stream\r\nGrip-Channel: {channel}\r\nContent-Length: 0\r\n\r\n"
                );
                if socket.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}
