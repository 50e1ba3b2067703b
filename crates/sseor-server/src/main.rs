//! `sseor`: the standalone Server-Sent Events fan-out server.

mod config;
mod transport;

use std::process::ExitCode;

use axum::body::Bytes;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use config::Config;
use transport::Transport;

/// jemalloc, which gives memory back to the system once a load is over: with glibc's
/// malloc, 2,000 slow request bodies (64 KiB each) left 165 MiB of a 185 MiB peak held
/// 10 s after they ended; with jemalloc, its background threads and a 1 s decay (see
/// `.cargo/config.toml`), 25 MiB. `_RJEM_MALLOC_CONF` tunes it at run time.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The demo page served at `/`.
const INDEX_HTML: &str = include_str!("../assets/index.html");

/// The demo page's stylesheet, served at `/demo.css`.
const DEMO_CSS: &str = include_str!("../assets/demo.css");

/// The demo page's script, served at `/demo.js`.
const DEMO_JS: &str = include_str!("../assets/demo.js");

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::load();
    if let Err(message) = config.init_logging() {
        eprintln!("sseor: {message}");
        return ExitCode::from(2);
    }
    // A setting that cannot be used stops the start: exit code 2, like a bad flag.
    let transport = match config.transport.load() {
        Ok(transport) => transport,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("sseor: {message}");
            return ExitCode::from(2);
        }
    };
    match run(config, transport).await {
        Ok(()) => ExitCode::SUCCESS,
        // A setting that cannot be used: one line, where an operator looks first.
        Err(Stop::Config(message)) => {
            eprintln!("sseor: {message}");
            ExitCode::from(2)
        }
        Err(Stop::Failed(message)) => {
            tracing::error!("{message}");
            // Also where an operator looks first, whatever the log filter.
            eprintln!("sseor: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The demo page, marked when streams need a credential so that it asks for a token.
fn demo_page(requires_auth: bool) -> Bytes {
    if requires_auth {
        let marked = INDEX_HTML.replacen(r#"data-auth="off""#, r#"data-auth="on""#, 1);
        Bytes::from(marked)
    } else {
        Bytes::from_static(INDEX_HTML.as_bytes())
    }
}

/// Answers one of the demo page's files.
fn demo_asset(content_type: &'static str, body: &'static str) -> Response {
    // Revalidated on every load, like `/sseor.js`: the page and its parts stay of one version.
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// Why the server stopped early.
enum Stop {
    /// A setting cannot be used (exit code 2).
    Config(String),
    /// Anything else (exit code 1).
    Failed(String),
}

async fn run(config: Config, transport: Transport) -> Result<(), Stop> {
    let builder = transport.apply(config.manager().map_err(Stop::Config)?);
    let address = config.listen_address().map_err(Stop::Config)?;
    let manager = builder.build().await.map_err(|e| match e {
        sseor::Error::InvalidUrl(_) => Stop::Config(format!("cannot start: {e}")),
        e => Stop::Failed(format!("cannot start: {e}")),
    })?;
    let listener = sseor::Manager::bind(&address.to_string())
        .await
        .map_err(|e| Stop::Failed(format!("cannot listen on {address}: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| Stop::Failed(e.to_string()))?;
    let scheme = if transport.is_tls() { "https" } else { "http" };
    tracing::info!(
        address = %address,
        broker = config.broker_name(),
        authentication = config.authentication_name(),
        "sseor listening on {scheme}://{address}"
    );
    let page = demo_page(manager.requires_auth());
    let app = sseor::api::router(&manager)
        .route("/", get(move || async move { Html(page) }))
        .route(
            "/demo.css",
            get(|| async { demo_asset("text/css; charset=utf-8", DEMO_CSS) }),
        )
        .route(
            "/demo.js",
            get(|| async { demo_asset("text/javascript; charset=utf-8", DEMO_JS) }),
        )
        .fallback(sseor::api::not_found);
    let app = transport.layer(app);
    manager
        .serve(listener, app)
        .await
        .map_err(|e| Stop::Failed(format!("server stopped: {e}")))?;
    manager.close().await;
    tracing::info!("sseor stopped");
    Ok(())
}
