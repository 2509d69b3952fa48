//! Server certificates: PEM files from the config, one chosen per connection by SNI, and
//! a self-signed certificate generated for the demo.

use crate::config::CertConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate configured: add a [[tls.certs]] entry with cert and key")]
    NoCertificate,
    #[error("{path}: cannot read certificates: {reason}")]
    Certificates { path: PathBuf, reason: String },
    #[error("{path}: cannot read the private key: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The rustls configs for the TCP listener (ALPN h2, http/1.1) and for QUIC (ALPN h3,
/// TLS 1.3 only), sharing one certificate resolver.
pub struct ServerTls {
    pub tcp: Arc<rustls::ServerConfig>,
    pub quic: Arc<rustls::ServerConfig>,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn server_tls(certs: &[CertConfig]) -> Result<ServerTls, TlsError> {
    let provider = provider();
    let resolver = Arc::new(SniResolver::load(certs, &provider)?);

    let mut tcp = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    tcp.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let mut quic = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    quic.alpn_protocols = vec![b"h3".to_vec()];
    // QUIC requires either no early data or the maximum (RFC 9001 §4.6.1).
    quic.max_early_data_size = 0;

    Ok(ServerTls {
        tcp: Arc::new(tcp),
        quic: Arc::new(quic),
    })
}

/// Picks a certificate by SNI: exact name, then `*.domain`, then the first certificate
/// (clients without SNI, or connecting by IP address, get the default).
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn load(certs: &[CertConfig], provider: &CryptoProvider) -> Result<Self, TlsError> {
        let mut by_name = HashMap::new();
        let mut default = None;
        for cert in certs {
            let key = Arc::new(load_certified_key(&cert.cert, &cert.key, provider)?);
            for name in &cert.names {
                by_name.insert(name.clone(), key.clone());
            }
            default.get_or_insert(key);
        }
        Ok(SniResolver {
            by_name,
            default: default.ok_or(TlsError::NoCertificate)?,
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
        self.by_name
            .get(&name)
            .or_else(|| wildcard.and_then(|w| self.by_name.get(&w)))
            .or(Some(&self.default))
            .cloned()
    }
}

fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Certificates {
            path: cert_path.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificates {
            path: cert_path.to_owned(),
            reason: "no PEM certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: key_path.to_owned(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    // Catches a key that does not belong to the certificate at startup, not per handshake.
    certified.keys_match().map_err(|e| TlsError::Key {
        path: key_path.to_owned(),
        reason: format!(
            "does not match the certificate in {}: {e}",
            cert_path.display()
        ),
    })?;
    Ok(certified)
}

/// Writes a self-signed certificate for `names` (DNS names or IP addresses) into `dir` as
/// `cert.pem` and `key.pem`, and returns their paths. Clients trust it by using
/// `cert.pem` as their CA.
pub fn generate_self_signed(dir: &Path, names: &[&str]) -> Result<(PathBuf, PathBuf), TlsError> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|source| TlsError::Write {
                path: path.clone(),
                source,
            })?;
        Ok::<_, TlsError>(path)
    };
    let cert = write("cert.pem", generated.cert.pem())?;
    let key = write("key.pem", generated.key_pair.serialize_pem())?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    /// Accepts any certificate, so a test can look at which one the server presented.
    #[derive(Debug)]
    struct AcceptAny(Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// The certificate a real TLS handshake with `sni` gets from `server`.
    async fn presented(server: &ServerTls, sni: &str) -> Vec<u8> {
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server.tcp.clone());
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        let (accepted, connected) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
        accepted.unwrap();
        let stream = connected.unwrap();
        stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    #[tokio::test]
    async fn certificates_are_chosen_by_sni_exact_then_wildcard_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let cert = |sub: &str, names: &[&str]| {
            let at = dir.path().join(sub);
            std::fs::create_dir_all(&at).unwrap();
            let (cert, key) = generate_self_signed(&at, names).unwrap();
            let der = CertificateDer::pem_file_iter(&cert)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .to_vec();
            let config = CertConfig {
                cert,
                key,
                names: names.iter().map(|n| n.to_string()).collect(),
            };
            (config, der)
        };
        let (default, default_der) = cert("default", &["default.test"]);
        let (exact, exact_der) = cert("exact", &["a.example"]);
        let (wild, wild_der) = cert("wild", &["*.b.example"]);
        let server = server_tls(&[default, exact, wild]).unwrap();
        assert_eq!(presented(&server, "a.example").await, exact_der);
        assert_eq!(presented(&server, "A.Example").await, exact_der);
        assert_eq!(presented(&server, "x.b.example").await, wild_der);
        assert_eq!(presented(&server, "unknown.test").await, default_der);
        assert_eq!(presented(&server, "b.example").await, default_der);
    }

    #[test]
    fn generated_certificate_loads_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = generate_self_signed(dir.path(), &["localhost", "127.0.0.1"]).unwrap();
        let config = CertConfig {
            cert: cert.clone(),
            key: key.clone(),
            names: vec![],
        };
        assert!(server_tls(std::slice::from_ref(&config)).is_ok());

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem").unwrap();
        let bad_key = CertConfig {
            key: garbage.clone(),
            ..config.clone()
        };
        let err = server_tls(&[bad_key]).err().unwrap().to_string();
        assert!(err.contains("garbage.pem"), "{err}");
        let bad_cert = CertConfig {
            cert: garbage,
            ..config.clone()
        };
        let err = server_tls(&[bad_cert]).err().unwrap().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");

        // A key from another certificate is caught at load time.
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = generate_self_signed(other.path(), &["localhost"]).unwrap();
        let mismatched = CertConfig {
            key: other_key,
            ..config
        };
        let err = server_tls(&[mismatched]).err().unwrap().to_string();
        assert!(err.contains("does not match"), "{err}");
    }
}
