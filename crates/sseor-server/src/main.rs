//! `sseor`: the standalone Server-Sent Events fan-out server (see the `sseor_server` crate).

use std::process::ExitCode;

/// jemalloc, which gives memory back to the system once a load is over: with glibc's
/// malloc, 2,000 slow request bodies (64 KiB each) left 165 MiB of a 185 MiB peak held
/// 10 s after they ended; with jemalloc, its background threads and a 1 s decay (see
/// `.cargo/config.toml`), 25 MiB. `_RJEM_MALLOC_CONF` tunes it at run time.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    sseor_server::run().await
}
