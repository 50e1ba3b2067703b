//! The TLS side of the client: event streams over HTTP/1.1 in TLS, and over HTTP/2 (one
//! stream per connection), trusting the certificate the server under test was given.
//!
//! Lean, so that 10,000 streams fit in one process: an idle stream holds its connection
//! and no read buffer (bytes are read into a buffer on the stack, never across an await).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How the client reaches the server's streams.
#[derive(Clone, Default)]
pub(crate) enum Connector {
    /// Plain TCP, HTTP/1.1.
    #[default]
    Plain,
    /// HTTP/1.1 in TLS (ALPN `http/1.1`).
    Tls(TlsConnector),
    /// HTTP/2 in TLS (ALPN `h2`), one stream per connection.
    H2(TlsConnector),
}

impl Connector {
    /// HTTP/1.1 over TLS, trusting only `root` (DER).
    pub(crate) fn tls(root: &[u8]) -> Result<Self, String> {
        Ok(Self::Tls(connector(root, b"http/1.1")?))
    }

    /// HTTP/2 over TLS, trusting only `root` (DER).
    pub(crate) fn h2(root: &[u8]) -> Result<Self, String> {
        Ok(Self::H2(connector(root, b"h2")?))
    }
}

fn connector(root: &[u8], alpn: &[u8]) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(root.to_vec()))
        .map_err(|e| format!("the server's certificate: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The name the server's certificate is checked against.
fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid DNS name")
}

/// The TLS handshake on `socket`.
pub(crate) async fn handshake(
    tls: &TlsConnector,
    socket: TcpStream,
) -> Result<TlsStream<TcpStream>, String> {
    tls.connect(server_name(), socket)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// Reads what the TLS stream has, into a buffer on the stack; `None` at its end or on an
/// error. Holds no buffer while it waits.
pub(crate) async fn read_tls(
    tls: &mut TlsStream<TcpStream>,
    on_bytes: &mut impl FnMut(&[u8]),
) -> Option<()> {
    loop {
        {
            // Plaintext rustls already holds first, then new bytes from the socket.
            let mut buf = [0u8; 16 * 1024];
            match tls.read(&mut buf).now_or_never() {
                Some(Ok(0) | Err(_)) => return None,
                Some(Ok(n)) => {
                    on_bytes(&buf[..n]);
                    return Some(());
                }
                None => {}
            }
        }
        tls.get_ref().0.readable().await.ok()?;
    }
}

/// An HTTP/2 stream's response body, with its connection's task (ended with it).
pub(crate) struct H2Body {
    body: h2::RecvStream,
    _requests: h2::client::SendRequest<Bytes>,
    connection: JoinHandle<()>,
}

impl Drop for H2Body {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl H2Body {
    /// The next bytes of the body; `None` at its end or on a reset.
    pub(crate) async fn read(&mut self, on_bytes: &mut impl FnMut(&[u8])) -> Option<()> {
        let data = self.body.data().await?.ok()?;
        on_bytes(&data);
        let _ = self.body.flow_control().release_capacity(data.len());
        Some(())
    }
}

/// Opens `GET path` over HTTP/2 on a new TLS connection, with more `headers` (each
/// `Name: value` ending with CRLF); an answer other than 200 is an error.
pub(crate) async fn open_h2(
    tls: &TlsConnector,
    socket: TcpStream,
    port: u16,
    path: &str,
    headers: &str,
) -> Result<H2Body, String> {
    let tls = handshake(tls, socket).await?;
    let (requests, connection) = h2::client::handshake(tls)
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let connection = tokio::spawn(connection.map(|_| ()));
    let mut request = http::Request::get(format!("https://127.0.0.1:{port}{path}"))
        .header("accept", "text/event-stream")
        .header("cache-control", "no-cache");
    for line in headers.split("\r\n").filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').ok_or("a header without a colon")?;
        request = request.header(name.trim().to_ascii_lowercase(), value.trim());
    }
    let request = request.body(()).map_err(|e| e.to_string())?;
    let mut requests = requests.ready().await.map_err(|e| format!("HTTP/2: {e}"))?;
    let (response, _) = requests
        .send_request(request, true)
        .map_err(|e| format!("request: {e}"))?;
    let response = response.await.map_err(|e| format!("response: {e}"))?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("answered {}", response.status()));
    }
    Ok(H2Body {
        body: response.into_body(),
        _requests: requests,
        connection,
    })
}
