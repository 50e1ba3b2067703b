//! How the broker reaches Redis: where it is (a URL, or Sentinel), the multiplexed command
//! connection, and what its errors mean.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Client, ConnectionAddr, ErrorKind, RedisError};

use super::RedisOptions;
use crate::{Error, Result};

/// Where the Redis master is: at a fixed address, or wherever Sentinel says it is now.
pub(super) enum Endpoint {
    Fixed(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

impl Endpoint {
    /// A client of the master, as of now.
    pub(super) async fn client(&self) -> redis::RedisResult<Client> {
        match self {
            Self::Fixed(client) => Ok(client.clone()),
            Self::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }
}

/// Where `url` says Redis is: `redis://`, `rediss://` (with `options.ca_file`),
/// `redis+unix://` or `redis+sentinel://`.
pub(super) fn endpoint_for(url: &str, options: &RedisOptions) -> Result<Endpoint> {
    if url.starts_with("rediss://") {
        // rustls needs one process-wide crypto provider; another part of the program may
        // have installed one already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        return sentinel_endpoint(rest);
    }
    let Some(ca_file) = &options.ca_file else {
        return Client::open(url)
            .map(Endpoint::Fixed)
            .map_err(|e| Error::InvalidUrl(describe(&e)));
    };
    let root_cert = std::fs::read(ca_file).map_err(|e| {
        Error::Broker(format!(
            "cannot read the Redis CA file {}: {e}",
            ca_file.display()
        ))
    })?;
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    Client::build_with_tls(url, certificates)
        .map(Endpoint::Fixed)
        .map_err(|e| Error::InvalidUrl(describe(&e)))
}

/// Parses what follows `redis+sentinel://`:
/// `[[user]:password@]host[:port][,host[:port]...]/service[/db]`. The credentials are the
/// master's; sentinels listen on 26379 unless told otherwise.
fn sentinel_endpoint(rest: &str) -> Result<Endpoint> {
    let invalid = |why: &str| Error::InvalidUrl(format!("redis+sentinel:// URL: {why}"));
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (Some(credentials), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid("expected /SERVICE after the sentinel addresses"))?;
    let mut path = path.split('/');
    let service = path
        .next()
        .filter(|service| !service.is_empty())
        .ok_or_else(|| invalid("the service (master) name is missing"))?;
    let db = match path.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse()
            .map_err(|_| invalid("the database is not a number"))?,
    };
    let sentinels = hosts
        .split(',')
        .map(|address| {
            let (host, port) = address.rsplit_once(':').unwrap_or((address, "26379"));
            let port = port
                .parse()
                .map_err(|_| invalid("a sentinel port is not a number"))?;
            if host.is_empty() {
                return Err(invalid("a sentinel host is empty"));
            }
            Ok(ConnectionAddr::Tcp(host.to_owned(), port))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut builder = SentinelClientBuilder::new(sentinels, service, SentinelServerType::Master)
        .map_err(|e| Error::InvalidUrl(describe(&e)))?
        .set_client_to_redis_db(db);
    if let Some((user, password)) = credentials.map(|c| c.split_once(':').unwrap_or((c, ""))) {
        if !user.is_empty() {
            builder = builder.set_client_to_redis_username(user);
        }
        if !password.is_empty() {
            builder = builder.set_client_to_redis_password(password);
        }
    }
    let sentinel = builder
        .build()
        .map_err(|e| Error::InvalidUrl(describe(&e)))?;
    Ok(Endpoint::Sentinel(tokio::sync::Mutex::new(sentinel)))
}

/// The multiplexed command connection. With Sentinel, a connection that fails or finds
/// itself on a replica is dropped, and the next command asks Sentinel for the master.
#[derive(Clone)]
pub(super) struct Commands {
    endpoint: Arc<Endpoint>,
    config: ConnectionManagerConfig,
    current: Arc<tokio::sync::Mutex<Option<ConnectionManager>>>,
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

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let mut current = self.current.lock().await;
        if let Some(connection) = &*current {
            return Ok(connection.clone());
        }
        let client = self.endpoint.client().await?;
        let connection = client.get_connection_manager_lazy(self.config.clone())?;
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `command` on the connection; with Sentinel, an error that says the master
    /// may have moved drops the connection, so that the next command asks Sentinel again.
    pub(super) async fn run<T, F, Fut>(&self, command: F) -> redis::RedisResult<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let result = command(self.connection().await?).await;
        if let Err(error) = &result
            && matches!(*self.endpoint, Endpoint::Sentinel(_))
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
        let client = endpoint.client().await?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        // Without a password, connecting succeeds and only commands fail: ask one.
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
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
