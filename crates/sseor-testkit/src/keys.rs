//! Key pairs made in-process with rcgen, as PEM files: what JWT signers hold and what
//! servers are given to check signatures with.

use std::path::{Path, PathBuf};

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};

/// A key pair written as `NAME.key` (the private key, PKCS#8 PEM) and `NAME.pub` (the
/// public key, SubjectPublicKeyInfo PEM).
pub struct KeyFiles {
    /// The private key, PKCS#8 PEM: what a signer signs with.
    pub private_pem: String,
    /// The private key's file.
    pub private: PathBuf,
    /// The public key's file.
    pub public: PathBuf,
}

impl KeyFiles {
    /// An RSA-2048 key pair in `dir`.
    pub fn rsa(dir: &Path, name: &str) -> Self {
        Self::generate(dir, name, &PKCS_RSA_SHA256)
    }

    /// A P-256 (ES256) key pair in `dir`.
    pub fn p256(dir: &Path, name: &str) -> Self {
        Self::generate(dir, name, &PKCS_ECDSA_P256_SHA256)
    }

    /// A P-384 key pair in `dir`.
    pub fn p384(dir: &Path, name: &str) -> Self {
        Self::generate(dir, name, &PKCS_ECDSA_P384_SHA384)
    }

    fn generate(dir: &Path, name: &str, algorithm: &'static rcgen::SignatureAlgorithm) -> Self {
        let key = KeyPair::generate_for(algorithm).expect("cannot make a key pair");
        let files = Self {
            private_pem: key.serialize_pem(),
            private: dir.join(format!("{name}.key")),
            public: dir.join(format!("{name}.pub")),
        };
        std::fs::write(&files.private, &files.private_pem).unwrap();
        std::fs::write(&files.public, key.public_key_pem()).unwrap();
        files
    }
}
