//! sseor serving HTTPS, with a self-signed certificate made for the run: its streams read
//! over HTTP/1.1 in TLS (`sseor-tls`) or over HTTP/2 (`sseor-h2`, one stream per
//! connection), its publishes sent over HTTPS.

use rcgen::{CertificateParams, KeyPair};

use super::{PublishApi, Server, ServerOptions, Target, start_sseor};
use crate::client::Connector;
use crate::temp_dir::TempDir;

/// Starts `target` (`SseorTls` or `SseorH2`): one sseor process, embedded broker, TLS.
pub(super) async fn start(target: Target, options: &ServerOptions) -> Result<Server, String> {
    let dir = TempDir::new("tls")?;
    let cert_der = write_self_signed(&dir)?;
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let env = [
        ("SSEOR_TLS_CERT", cert.to_str().ok_or("a non-UTF-8 path")?),
        ("SSEOR_TLS_KEY", key.to_str().ok_or("a non-UTF-8 path")?),
    ];
    let (process, port) = start_sseor(&options.server, &env).await?;
    let publish = PublishApi::Sseor(format!("https://127.0.0.1:{port}/api/v1/publish"));
    let mut server = Server::new(target, vec![process], port, publish);
    server.connector = match target {
        Target::SseorH2 => Connector::h2(&cert_der)?,
        _ => Connector::tls(&cert_der)?,
    };
    server.tls_root = Some(cert_der);
    server._dirs.push(dir);
    Ok(server)
}

/// Writes `cert.pem` and `key.pem` (a self-signed certificate for `localhost` and
/// 127.0.0.1) into `dir`; the certificate, DER, for the clients to trust.
fn write_self_signed(dir: &TempDir) -> Result<Vec<u8>, String> {
    let key = KeyPair::generate().map_err(|e| format!("key: {e}"))?;
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .and_then(|params| params.self_signed(&key))
        .map_err(|e| format!("certificate: {e}"))?;
    std::fs::write(dir.path("cert.pem"), cert.pem()).map_err(|e| format!("cert.pem: {e}"))?;
    std::fs::write(dir.path("key.pem"), key.serialize_pem())
        .map_err(|e| format!("key.pem: {e}"))?;
    Ok(cert.der().to_vec())
}
