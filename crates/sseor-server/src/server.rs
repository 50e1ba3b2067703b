//! A run of the server: its settings, logging, the listener and the routes, until a
//! signal ends it, and the exit code.

use std::process::ExitCode;

use crate::demo;
use crate::settings::{Settings, SettingsError};

/// Why the server stopped early.
enum Stop {
    /// A setting cannot be used, or `--help` or `--version` was asked.
    Settings(SettingsError),
    /// Anything else (exit code 1).
    Failed(String),
}

impl From<SettingsError> for Stop {
    fn from(error: SettingsError) -> Self {
        Self::Settings(error)
    }
}

/// Runs the server with the settings of the command line and the environment until
/// SIGTERM or SIGINT. The exit code: 0 after a clean stop (or `--help`, `--version`), 2 for
/// a setting that cannot be used (one line on stderr), 1 for any other failure.
pub async fn run() -> ExitCode {
    match start().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Stop::Settings(error)) => error.exit(),
        Err(Stop::Failed(message)) => {
            tracing::error!("{message}");
            // Also where an operator looks first, whatever the log filter.
            eprintln!("sseor: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn start() -> Result<(), Stop> {
    let settings = Settings::load()?;
    settings.logging.init();
    settings.warn();
    // Boxed: the server's future is deep enough to overflow the compiler's query depth
    // when the binary lays out its `main`.
    Box::pin(serve(settings)).await
}

async fn serve(settings: Settings) -> Result<(), Stop> {
    let manager = settings.builder.build().await.map_err(|e| match e {
        sseor::Error::InvalidUrl(_) => Stop::Settings(SettingsError::Invalid(format!(
            "cannot start with {}: {e}",
            crate::cli::name("redis_url")
        ))),
        e => Stop::Failed(format!("cannot start: {e}")),
    })?;
    let address = settings.address;
    let listener = sseor::Manager::bind(&address.to_string())
        .await
        .map_err(|e| Stop::Failed(format!("cannot listen on {address}: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| Stop::Failed(e.to_string()))?;
    let scheme = if settings.transport.is_tls() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        address = %address,
        broker = settings.broker,
        authentication = settings.authentication,
        webhook = settings.webhook,
        "sseor listening on {scheme}://{address}"
    );
    let app = demo::routes(sseor::api::router(&manager), manager.requires_auth())
        .fallback(sseor::api::not_found);
    let app = settings.transport.layer(app);
    manager
        .serve(listener, app)
        .await
        .map_err(|e| Stop::Failed(format!("server stopped: {e}")))?;
    manager.close().await;
    tracing::info!("sseor stopped");
    Ok(())
}
