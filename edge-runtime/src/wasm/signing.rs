//! Ed25519 signatures over deployed components: the security team signs a component with
//! `edge module sign`; the node accepts it only when one of its trusted public keys
//! verifies the signature over the exact bytes.
//!
//! Formats: private keys are PKCS#8 PEM (`edge module keygen` writes one); public keys
//! and signatures are standard base64 (32 and 64 bytes).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("private key: {0}")]
    PrivateKey(String),
    #[error("public key `{0}` is not 32 bytes of base64")]
    PublicKey(String),
    #[error("the signature is not 64 bytes of base64")]
    Malformed,
    #[error("no trusted key verifies the signature")]
    Untrusted,
    #[error("no trusted keys are configured (wasm.trusted_keys), so nothing can be deployed")]
    NoTrustedKeys,
}

/// A new key pair: (PKCS#8 PEM private key, base64 public key).
pub fn generate() -> Result<(String, String), SigningError> {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| SigningError::PrivateKey("cannot generate".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| SigningError::PrivateKey(e.to_string()))?;
    let body = STANDARD.encode(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok((pem, STANDARD.encode(pair.public_key().as_ref())))
}

fn key_pair(private_pem: &[u8]) -> Result<Ed25519KeyPair, SigningError> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(private_pem)
        .map_err(|e| SigningError::PrivateKey(format!("not a PKCS#8 PEM key: {e}")))?;
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
        .map_err(|e| SigningError::PrivateKey(format!("not an Ed25519 key: {e}")))
}

/// The base64 signature of `bytes`.
pub fn sign(private_pem: &[u8], bytes: &[u8]) -> Result<String, SigningError> {
    Ok(STANDARD.encode(key_pair(private_pem)?.sign(bytes).as_ref()))
}

/// The base64 public key of a private key.
pub fn public_key_of(private_pem: &[u8]) -> Result<String, SigningError> {
    Ok(STANDARD.encode(key_pair(private_pem)?.public_key().as_ref()))
}

/// Trusted public keys, parsed from config.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys(Vec<[u8; 32]>);

impl TrustedKeys {
    pub fn parse(keys: &[String]) -> Result<Self, SigningError> {
        keys.iter()
            .map(|k| {
                STANDARD
                    .decode(k.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| SigningError::PublicKey(k.clone()))
            })
            .collect::<Result<_, _>>()
            .map(TrustedKeys)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ok with the index of the key that verified.
    pub fn verify(&self, bytes: &[u8], signature_b64: &str) -> Result<usize, SigningError> {
        if self.0.is_empty() {
            return Err(SigningError::NoTrustedKeys);
        }
        let sig = STANDARD
            .decode(signature_b64.trim())
            .ok()
            .filter(|s| s.len() == 64)
            .ok_or(SigningError::Malformed)?;
        self.0
            .iter()
            .position(|key| {
                UnparsedPublicKey::new(&ED25519, key)
                    .verify(bytes, &sig)
                    .is_ok()
            })
            .ok_or(SigningError::Untrusted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let (private, public) = generate().unwrap();
        assert_eq!(public_key_of(private.as_bytes()).unwrap(), public);
        let (_, other) = generate().unwrap();
        let keys = TrustedKeys::parse(&[other, public]).unwrap();
        let sig = sign(private.as_bytes(), b"component").unwrap();
        assert_eq!(keys.verify(b"component", &sig), Ok(1));
        assert_eq!(
            keys.verify(b"componenT", &sig),
            Err(SigningError::Untrusted)
        );
        assert_eq!(
            keys.verify(b"component", "AAAA"),
            Err(SigningError::Malformed)
        );
        assert_eq!(
            TrustedKeys::default().verify(b"component", &sig),
            Err(SigningError::NoTrustedKeys)
        );
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(
            matches!(TrustedKeys::parse(&["short".into()]), Err(SigningError::PublicKey(k)) if k == "short")
        );
        assert!(matches!(
            sign(b"not a key", b"x"),
            Err(SigningError::PrivateKey(_))
        ));
    }
}
