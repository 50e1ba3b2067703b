//! TLS certificates made in-process with rcgen, P-256 keys: self-signed ones, and a CA
//! that issues server certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tempfile::TempDir;

/// The names every server certificate here is valid for.
const LOCALHOST: [&str; 2] = ["localhost", "127.0.0.1"];

/// A certificate and its private key, as PEM text and as the files `cert.pem` and
/// `key.pem` in a directory of their own, removed when this is dropped.
pub struct CertFiles {
    dir: TempDir,
    /// The certificate's PEM file.
    pub cert: PathBuf,
    /// The private key's PEM file (PKCS#8).
    pub key: PathBuf,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER: what a TLS client adds to its roots.
    pub cert_der: Vec<u8>,
}

impl CertFiles {
    /// A self-signed certificate for `localhost` and 127.0.0.1.
    pub fn self_signed() -> Self {
        let key = KeyPair::generate().expect("cannot make a P-256 key");
        let cert = server_params()
            .self_signed(&key)
            .expect("cannot sign a certificate");
        Self::write(&cert, &key)
    }

    fn write(cert: &Certificate, key: &KeyPair) -> Self {
        let dir = tempfile::tempdir().expect("cannot make a temporary directory");
        let files = Self {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            dir,
        };
        std::fs::write(&files.cert, &files.cert_pem).unwrap();
        std::fs::write(&files.key, &files.key_pem).unwrap();
        files
    }

    /// A TLS client (rustls, *ring*) that trusts only this certificate and offers `alpn`
    /// (`b"h2"`, `b"http/1.1"`); connect with the name `localhost`.
    ///
    /// ```ignore
    /// let pki = CertFiles::self_signed();
    /// let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    /// let tls = pki.tls_client(&[b"http/1.1"]).connect(name, tcp).await?;
    /// ```
    pub fn tls_client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        self.client(alpn, rustls::DEFAULT_VERSIONS)
    }

    /// [`Self::tls_client`] speaking TLS 1.2 only.
    pub fn tls12_client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        self.client(alpn, &[&rustls::version::TLS12])
    }

    fn client(
        &self,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                self.cert_der.clone(),
            ))
            .expect("a certificate rustls accepts");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("TLS 1.2 and 1.3 with ring")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
    }

    /// The directory of the files, removed with them.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to a new file `name` beside the certificate; its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

/// A certificate authority made for a test: a self-signed CA certificate and its key.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA whose common name says `sseor test NAME`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("sseor test {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("cannot make a P-256 key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("cannot sign the CA");
        Self { issuer }
    }

    /// The CA's certificate, PEM: what a client trusts.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `localhost` and 127.0.0.1 issued by this CA.
    pub(crate) fn issue(&self) -> CertFiles {
        let key = KeyPair::generate().expect("cannot make a P-256 key");
        let cert = server_params()
            .signed_by(&key, &self.issuer)
            .expect("cannot issue a certificate");
        CertFiles::write(&cert, &key)
    }
}

/// A server certificate's parameters: valid for [`LOCALHOST`], for server authentication.
fn server_params() -> CertificateParams {
    let names: Vec<String> = LOCALHOST.iter().map(|name| (*name).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("valid names");
    params
        .distinguished_name
        .push(DnType::CommonName, LOCALHOST[0]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
}
