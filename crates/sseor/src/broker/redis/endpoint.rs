//! Where Redis is: one server, the master Sentinel names, or a Redis Cluster; parsed from
//! the broker's URL.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Client, ConnectionAddr, ErrorKind};

use super::RedisOptions;
use super::commands::describe;
use crate::{Error, Result};

/// Where Redis is: at a fixed address, wherever Sentinel says the master is now, or a
/// Redis Cluster.
pub(super) enum Endpoint {
    Fixed(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster(Cluster),
}

/// The seed nodes of a Redis Cluster, and how to reach them.
pub(super) struct Cluster {
    /// `redis://[user:password@]host:port` (or `rediss://`) per seed node.
    nodes: Vec<String>,
    certificates: Option<redis::TlsCertificates>,
    timeout: Duration,
}

impl Endpoint {
    /// A client of the master, as of now; an error for a cluster, which has no one master.
    pub(super) async fn client(&self) -> redis::RedisResult<Client> {
        match self {
            Self::Fixed(client) => Ok(client.clone()),
            Self::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
            Self::Cluster(_) => Err(redis::RedisError::from((
                ErrorKind::InvalidClientConfig,
                "a Redis Cluster has no single master",
            ))),
        }
    }

    /// The cluster, when Redis is one.
    pub(super) fn cluster(&self) -> Option<&Cluster> {
        match self {
            Self::Cluster(cluster) => Some(cluster),
            _ => None,
        }
    }
}

impl Cluster {
    /// A client of the cluster; with `pushes`, speaking RESP3 and sending what the
    /// cluster pushes (sharded messages, subscription changes) there.
    pub(super) fn client(
        &self,
        pushes: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> redis::RedisResult<ClusterClient> {
        let mut builder = ClusterClientBuilder::new(self.nodes.clone())
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout)
            .retries(2);
        if let Some(certificates) = &self.certificates {
            builder = builder.certs(certificates.clone());
        }
        if let Some(pushes) = pushes {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(pushes);
        }
        builder.build()
    }
}

/// Where `url` says Redis is: `redis://`, `rediss://` (with `options.ca_file`),
/// `redis+unix://`, `redis+sentinel://`, `redis+cluster://` or `rediss+cluster://`.
pub(super) fn endpoint_for(url: &str, options: &RedisOptions) -> Result<Endpoint> {
    if url.starts_with("rediss://") || url.starts_with("rediss+cluster://") {
        // rustls needs one process-wide crypto provider; another part of the program may
        // have installed one already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        return sentinel_endpoint(rest);
    }
    let certificates = certificates(options)?;
    if let Some(rest) = url.strip_prefix("redis+cluster://") {
        return cluster_endpoint("redis", rest, certificates, options.timeout);
    }
    if let Some(rest) = url.strip_prefix("rediss+cluster://") {
        return cluster_endpoint("rediss", rest, certificates, options.timeout);
    }
    let Some(certificates) = certificates else {
        return Client::open(url)
            .map(Endpoint::Fixed)
            .map_err(|e| Error::InvalidUrl(describe(&e)));
    };
    Client::build_with_tls(url, certificates)
        .map(Endpoint::Fixed)
        .map_err(|e| Error::InvalidUrl(describe(&e)))
}

/// The CA of `options.ca_file`, for TLS with a private CA.
fn certificates(options: &RedisOptions) -> Result<Option<redis::TlsCertificates>> {
    let Some(ca_file) = &options.ca_file else {
        return Ok(None);
    };
    let root_cert = std::fs::read(ca_file).map_err(|e| {
        Error::Broker(format!(
            "cannot read the Redis CA file {}: {e}",
            ca_file.display()
        ))
    })?;
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    }))
}

/// Parses what follows `redis+cluster://` (or `rediss+cluster://`, `scheme` then
/// `rediss`): `[[user]:password@]host:port[,host:port...][/]`, the seed nodes.
fn cluster_endpoint(
    scheme: &str,
    rest: &str,
    certificates: Option<redis::TlsCertificates>,
    timeout: Duration,
) -> Result<Endpoint> {
    let invalid = |why: &str| Error::InvalidUrl(format!("{scheme}+cluster:// URL: {why}"));
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, rest),
    };
    let hosts = hosts.strip_suffix('/').unwrap_or(hosts);
    if hosts.contains('/') {
        return Err(invalid("a cluster has only database 0; remove the path"));
    }
    let nodes = hosts
        .split(',')
        .map(|address| {
            let (host, port) = address
                .rsplit_once(':')
                .ok_or_else(|| invalid("every node needs host:port"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(invalid("a node is not host:port"));
            }
            let credentials = credentials.map(|c| format!("{c}@")).unwrap_or_default();
            Ok(format!("{scheme}://{credentials}{host}:{port}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let cluster = Cluster {
        nodes,
        certificates,
        timeout,
    };
    // Checks the seeds parse, without connecting.
    cluster
        .client(None)
        .map_err(|e| Error::InvalidUrl(describe(&e)))?;
    Ok(Endpoint::Cluster(cluster))
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
