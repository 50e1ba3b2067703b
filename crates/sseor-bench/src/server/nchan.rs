//! nginx with nchan under test: one instance with the memory store, or two on one Redis
//! (nchan's Redis store).

use std::process::Stdio;

use tokio::process::Command;

use super::{PublishApi, Server, ServerOptions, Target, free_port, start_redis, wait_for_port};
use crate::process::Process;
use crate::temp_dir::TempDir;

/// Starts `target` (`Nchan` or `NchanRedis`): with Redis, streams are on the second
/// instance and publishes go to the first.
pub(super) async fn start(target: Target, options: &ServerOptions) -> Result<Server, String> {
    if target == Target::Nchan {
        let (process, dir, port) = start_nginx(options, None).await?;
        let mut server = Server::new(target, vec![process], port, publish_api(port));
        server._dirs.push(dir);
        return Ok(server);
    }
    let (redis, url) = start_redis().await?;
    let (publishing, dir1, publish_port) = start_nginx(options, Some(&url)).await?;
    let (streaming, dir2, stream_port) = start_nginx(options, Some(&url)).await?;
    let mut server = Server::new(
        target,
        vec![publishing, streaming],
        stream_port,
        publish_api(publish_port),
    );
    server._infrastructure.push(redis);
    server.redis_url = Some(url);
    server._dirs.extend([dir1, dir2]);
    Ok(server)
}

/// nchan's publisher location on `port`.
fn publish_api(port: u16) -> PublishApi {
    PublishApi::Nchan(format!("http://127.0.0.1:{port}/pub/"))
}

/// Starts nginx with nchan's configuration on a free port, with the Redis store at
/// `redis_url` or the memory store.
async fn start_nginx(
    options: &ServerOptions,
    redis_url: Option<&str>,
) -> Result<(Process, TempDir, u16), String> {
    let dir = TempDir::new("nchan")?;
    let port = free_port()?;
    let upstream = redis_url.map_or(String::new(), |url| {
        let address = url.trim_end_matches("/0");
        format!("upstream redis_store {{ nchan_redis_server {address}; }}")
    });
    let store = if redis_url.is_some() {
        "nchan_redis_pass redis_store;"
    } else {
        ""
    };
    dir.write(
        &options.peers.join("nchan.conf"),
        "nginx.conf",
        &[
            ("WORKERS", &options.nchan_workers),
            ("PORT", &port.to_string()),
            ("UPSTREAM", &upstream),
            ("STORE", store),
        ],
    )?;
    let process = Process::spawn(
        Command::new("nginx")
            .arg("-p")
            .arg(dir.root())
            .arg("-c")
            .arg(dir.path("nginx.conf"))
            // Before it reads its configuration nginx logs to the package's default file.
            .args(["-e", "error.log"])
            .stdout(Stdio::null()),
        "nginx (apt-get install nginx libnginx-mod-nchan)",
    )?;
    wait_for_port(port, "nginx").await?;
    Ok((process, dir, port))
}
