//! The cryptography the verifiers need, as a trait: inside the node it is the host's
//! `crypto` import (native `ring`), in `edge token` it is the same host code called
//! directly, so both check tokens with one implementation.

/// HMAC hash functions the token formats use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hmac {
    Sha256,
    Sha384,
    Sha512,
    Sha1,
    Md5,
}

/// Signature schemes the token formats use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// CloudFront.
    RsaPkcs1Sha1,
    /// JWT RS256.
    RsaPkcs1Sha256,
    /// JWT PS256.
    RsaPssSha256,
    /// JWT ES256: `r || s`.
    EcdsaP256Sha256,
    /// JWT EdDSA.
    Ed25519,
}

/// A public key as configured.
#[derive(Debug, Clone, Copy)]
pub enum PublicKey<'a> {
    /// PEM or DER (`SubjectPublicKeyInfo` or PKCS#1), a raw P-256 point or Ed25519 key.
    Encoded(&'a [u8]),
    /// An RSA key by modulus and exponent, big-endian (a JWK).
    Rsa { n: &'a [u8], e: &'a [u8] },
}

pub trait Crypto {
    fn hmac_sign(&self, algorithm: Hmac, key: &[u8], data: &[u8]) -> Vec<u8>;
    /// Constant-time.
    fn hmac_verify(&self, algorithm: Hmac, key: &[u8], data: &[u8], tag: &[u8]) -> bool;
    /// `Ok(false)` for a signature that does not verify, `Err` for a key that cannot be used.
    fn verify(
        &self,
        algorithm: Signature,
        key: PublicKey<'_>,
        data: &[u8],
        signature: &[u8],
    ) -> Result<bool, String>;
}
