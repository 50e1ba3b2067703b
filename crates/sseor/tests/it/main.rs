//! The library's integration tests, in one binary to link once. Each module is one file
//! of tests as it was on its own; their tests share this process and run side by side.
//!
//! `lifecycle` stays a binary of its own (`tests/lifecycle.rs`): it holds thousands of
//! sockets at once and times shutdowns within tenths of a second, which other files' heavy
//! tests (100,000 Redis subscriptions, slow consumers) running beside it would disturb.

mod common;

mod auth;
mod auth_callout;
mod axum_app;
mod batch;
mod cluster;
mod connection;
mod cursor;
mod disconnect;
mod encoder;
mod example;
mod history;
mod http2;
mod lifecycle_hooks;
mod manager;
mod presence;
mod redis;
mod redis_faults;
mod redis_functions;
mod redis_outage;
mod resume;
mod serve;
mod slow;
mod tls;
mod webhook;
