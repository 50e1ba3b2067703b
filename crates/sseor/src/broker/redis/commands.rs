//! The multiplexed command connection the broker sends everything but subscriptions on,
//! and what Redis's errors mean.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

use super::endpoint::Endpoint;
use crate::{Error, Result};

/// A connection for commands: to one server (reconnecting by itself), or to a cluster
/// (routing each command to the node of its keys, and following MOVED and ASK).
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The multiplexed command connection. With Sentinel, a connection that fails or finds
/// itself on a replica is dropped, and the next command asks Sentinel for the master.
#[derive(Clone)]
pub(super) struct Commands {
    endpoint: Arc<Endpoint>,
    config: ConnectionManagerConfig,
    current: Arc<tokio::sync::Mutex<Option<Connection>>>,
}

impl Commands {
    /// Commands to `endpoint`, over connections made as `config` says.
    pub(super) fn new(endpoint: Arc<Endpoint>, config: ConnectionManagerConfig) -> Self {
        Self {
            endpoint,
            config,
            current: Arc::default(),
        }
    }

    async fn connection(&self) -> redis::RedisResult<Connection> {
        let mut current = self.current.lock().await;
        if let Some(connection) = &*current {
            return Ok(connection.clone());
        }
        let connection = match self.endpoint.cluster() {
            Some(cluster) => {
                Connection::Cluster(cluster.client(None)?.get_async_connection().await?)
            }
            None => {
                let client = self.endpoint.client().await?;
                Connection::Single(client.get_connection_manager_lazy(self.config.clone())?)
            }
        };
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// Whether the commands go to a Redis Cluster.
    pub(super) fn is_cluster(&self) -> bool {
        self.endpoint.cluster().is_some()
    }

    /// Runs `command` on the connection; with Sentinel or a cluster, an error that says a
    /// master may have moved drops the connection, so that the next command asks Sentinel
    /// again, or learns the cluster's masters anew from its seed nodes.
    pub(super) async fn run<T, F, Fut>(&self, command: F) -> redis::RedisResult<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let result = command(self.connection().await?).await;
        if let Err(error) = &result
            && matches!(*self.endpoint, Endpoint::Sentinel(_) | Endpoint::Cluster(_))
            && master_may_have_moved(error)
        {
            *self.current.lock().await = None;
        }
        result
    }

    /// Sends one command.
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        self.run(|mut connection| async move { command.query_async(&mut connection).await })
            .await
    }

    /// Sends a pipeline.
    pub(super) async fn pipeline<T: redis::FromRedisValue>(
        &self,
        pipeline: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        self.run(|mut connection| async move { pipeline.query_async(&mut connection).await })
            .await
    }
}

/// Whether `error` may come from a master that moved (a failover): the connection is
/// gone, or the server it reaches is a replica now.
fn master_may_have_moved(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.to_string().contains("READONLY")
}

/// Fails fast on what retrying cannot mend (credentials, database); lets an unreachable
/// Redis through, since it may come up later.
pub(super) async fn check_credentials(endpoint: &Endpoint, timeout: Duration) -> Result<()> {
    let attempt = tokio::time::timeout(timeout, async {
        // Without a password, connecting succeeds and only commands fail: ask one.
        let ping = redis::cmd("PING");
        if let Some(cluster) = endpoint.cluster() {
            let mut connection = cluster.client(None)?.get_async_connection().await?;
            return ping.query_async::<String>(&mut connection).await;
        }
        let client = endpoint.client().await?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        ping.query_async::<String>(&mut connection).await
    })
    .await;
    match attempt {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if is_fatal(&e) => Err(Error::Broker(describe(&e))),
        Ok(Err(e)) => {
            tracing::warn!(error = %describe(&e), "Redis is not reachable yet; retrying in the background");
            Ok(())
        }
        Err(_) => {
            tracing::warn!("Redis did not answer in time; retrying in the background");
            Ok(())
        }
    }
}

/// Whether `error` is one that retrying cannot mend: credentials, database, certificates.
fn is_fatal(error: &RedisError) -> bool {
    let text = error.to_string();
    matches!(
        error.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig
    ) || [
        "WRONGPASS",
        "NOAUTH",
        "DB index is out of range",
        "certificate",
        "UnknownIssuer",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

/// The error's own words: redis-rs never puts the URL's password in them.
pub(super) fn describe(error: &RedisError) -> String {
    format!("Redis: {error}")
}

/// The broker error for a Redis that failed or could not be reached.
pub(super) fn unavailable(error: RedisError) -> Error {
    Error::Broker(describe(&error))
}
