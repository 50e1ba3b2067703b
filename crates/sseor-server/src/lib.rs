//! The standalone sseor server, which the `sseor` binary runs: its settings, declared once
//! in [`cli`] and checked in one pass by [`settings`], and [`run`].

pub mod cli;
mod demo;
mod logging;
mod server;
pub mod settings;
mod transport;

pub use server::run;
