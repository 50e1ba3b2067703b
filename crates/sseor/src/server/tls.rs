//! TLS termination in the server loop, with rustls: every accepted connection is
//! handshaken first, then served over HTTP/2 (by hyper) or HTTP/1.1 (as a plain
//! connection is, event streams written to the connection directly), whichever the
//! client chose by ALPN. Browsers open at most 6 HTTP/1.1 connections per origin, so a page
//! with more than a few event streams needs HTTP/2, and browsers speak HTTP/2 only over TLS.
//!
//! Over TLS 1.3, rustls does the handshake and [`super::sealed`] the records after it: an
//! HTTP/1.1 connection is taken over when its event stream begins, an HTTP/2 one at the
//! end of its handshake. What an idle stream keeps is then the socket and the two keys
//! of its records, where rustls keeps its session and a read buffer it never shrinks
//! below 4 KiB (as it still does over TLS 1.2); over HTTP/2, also hyper's and the `h2`
//! crate's connection state, in a task of its own. The workspace patches `h2` so that an
//! idle connection gives back its read and write buffers (`vendor/README.md`).

use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::connection::{self, Server};
use super::sealed::{RecordAligned, SealedStream};
use crate::{Error, Result};

/// How long a new connection may take to complete its TLS handshake: connections that
/// never finish one must not pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest PEM file read: certificate chains and keys are a few KiB, and a path to
/// something else (a device, a log) must not be read forever.
const MAX_PEM_FILE: u64 = 1024 * 1024;

/// The server side of TLS: a certificate chain, its private key, and ALPN offering `h2`
/// then `http/1.1`. Give it to [`Builder::tls`](crate::Builder::tls) so that
/// [`Manager::serve`](crate::Manager::serve) and
/// [`Manager::listen_and_serve`](crate::Manager::listen_and_serve) serve HTTPS.
///
/// Cheap to clone.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> sseor::Result<()> {
/// let tls = sseor::TlsConfig::from_pem_files("/etc/sseor/cert.pem", "/etc/sseor/key.pem")?;
/// let sse = sseor::Manager::builder().tls(tls).build().await?;
/// sse.listen_and_serve(":8443").await
/// # }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.alpn())
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads a PEM certificate chain (the server's certificate first, then any
    /// intermediates) and a PEM private key (PKCS#8, PKCS#1 or SEC1), checks that they
    /// belong together, and offers HTTP/2 and HTTP/1.1 by ALPN. Uses rustls' safe defaults
    /// (TLS 1.3 and 1.2) with the *ring* crypto provider.
    ///
    /// # Errors
    /// [`Error::Tls`] when a file cannot be read, holds no certificate or no private key,
    /// is not PEM, or the key does not match the certificate. The message names the file,
    /// never its contents.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let chain = read_chain(cert)?;
        let key_der = read_key(key)?;
        Self::from_der(chain, key_der).map_err(|error| match error {
            rustls::Error::InconsistentKeys(_) => Error::Tls(format!(
                "the private key in `{}` does not belong to the certificate in `{}`",
                key.display(),
                cert.display()
            )),
            other => Error::Tls(format!(
                "the private key in `{}` cannot be used: {other}",
                key.display()
            )),
        })
    }

    /// Uses a rustls configuration built elsewhere (client certificates, a certificate
    /// resolver that reloads, other protocol versions). Its ALPN list is kept as given: it
    /// should offer `h2` and `http/1.1`, or clients fall back to HTTP/1.1.
    ///
    /// Its `enable_secret_extraction` is turned on: after a TLS 1.3 handshake, an event
    /// stream's keys pass from rustls to sseor's server loop, which seals the stream's
    /// records itself and keeps far less per stream than a rustls session. The keys never
    /// leave the process.
    pub fn from_server_config(server: Arc<ServerConfig>) -> Self {
        let server = if server.enable_secret_extraction {
            server
        } else {
            let mut config = ServerConfig::clone(&server);
            config.enable_secret_extraction = true;
            Arc::new(config)
        };
        Self { server }
    }

    /// The protocols offered by ALPN, in order of preference.
    pub fn alpn(&self) -> Vec<String> {
        self.server
            .alpn_protocols
            .iter()
            .map(|protocol| String::from_utf8_lossy(protocol).into_owned())
            .collect()
    }

    fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> std::result::Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self::from_server_config(Arc::new(server)))
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server.clone())
    }
}

/// The file's bytes, at most [`MAX_PEM_FILE`] of them.
fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    let cannot = |error: std::io::Error| {
        Error::Tls(format!(
            "cannot read the {what} file `{}`: {error}",
            path.display()
        ))
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_PEM_FILE + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(Error::Tls(format!(
            "the {what} file `{}` is larger than 1 MiB: not a PEM file",
            path.display()
        )));
    }
    Ok(bytes)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path, "certificate")?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| malformed(path, "certificate", &error))?;
    if chain.is_empty() {
        return Err(Error::Tls(format!(
            "no certificate in `{}`: expected a PEM block `-----BEGIN CERTIFICATE-----`",
            path.display()
        )));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read_file(path, "private key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        pem::Error::NoItemsFound => Error::Tls(format!(
            "no private key in `{}`: expected a PEM block `-----BEGIN PRIVATE KEY-----` \
             (or `RSA PRIVATE KEY`, `EC PRIVATE KEY`)",
            path.display()
        )),
        error => malformed(path, "private key", &error),
    })
}

/// A PEM error, described without the bytes some variants carry (a line of the file,
/// which for a key file is part of the key).
fn malformed(path: &Path, what: &str, error: &pem::Error) -> Error {
    let why = match error {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line",
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM block is not valid base64",
        pem::Error::SectionTooLarge => "a PEM block is too large",
        _ => "it is not valid PEM",
    };
    Error::Tls(format!(
        "the {what} file `{}` is not usable: {why}",
        path.display()
    ))
}

/// Serves one accepted connection over TLS: the handshake (bounded by
/// [`HANDSHAKE_TIMEOUT`]), then HTTP/2 with hyper, or HTTP/1.1 as on a plain connection
/// (its first `GET` read by the server loop, an event stream written to the connection
/// directly), until the connection ends or the server stops. A failed handshake is the client's problem: logged at debug level.
pub(crate) async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    server: Arc<Server>,
) {
    let handshake = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        acceptor.accept(RecordAligned::new(socket)),
    );
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%error, %peer, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        // A connection still in its handshake has no request to finish.
        () = server.stopping.cancelled() => return,
    };
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        // HTTP/1.x: its first request read here, as on a plain connection.
        connection::serve(stream, peer, server).await;
        return;
    }
    if let Some(stream) = SealedStream::take_over(stream) {
        // A task of its own, sized for HTTP/2 alone: this one is as large as the handshake
        // and the HTTP/1.1 path, and an idle connection would keep all of it.
        let tracker = server.tracker.clone();
        tracker.spawn(async move { serve_h2(stream, peer, &server).await });
    }
}

/// Serves an HTTP/2 connection with hyper until it ends or the server stops.
async fn serve_h2<I>(io: I, peer: SocketAddr, server: &Server)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Cut off with every connection (hard stop); its streams are reset one by one.
    let abort = server.hard_stop.child_token();
    // The abort comes first: a cut-off stream must not end cleanly.
    tokio::select! {
        biased;
        () = abort.cancelled() => {},
        () = connection::serve_io(io, None, peer, server, &abort) => {},
    }
}
