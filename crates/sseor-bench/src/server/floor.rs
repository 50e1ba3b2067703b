//! `sseor-floor` under test: streams and publishes in nchan's shape (`/sub/CHANNEL`,
//! `POST /pub/CHANNEL`), next to the `sseor-app` binary.

use super::{PublishApi, Server, ServerOptions, Target, app};

/// Starts `sseor-floor` on a free port.
pub(super) async fn start(options: &ServerOptions) -> Result<Server, String> {
    let binary = options.app.with_file_name("sseor-floor");
    let (process, port) = app::spawn_listening(&binary, &["--port", "0"]).await?;
    Ok(Server::new(
        Target::Floor,
        vec![process],
        port,
        PublishApi::Nchan(format!("http://127.0.0.1:{port}/pub/")),
    ))
}
