//! Token crypto inside the component. The node's modules call the host's crypto import
//! (ring); a wasi:http host has none, so the edge function carries RustCrypto: every HMAC
//! the token formats use and RSA (CloudFront, JWT RS256/PS256). ECDSA and Ed25519 JWTs are
//! refused with a reason (see docs/edge-function.md): their crates would double the
//! component for a format CDN tokens rarely use.

use edge_module_token_auth::{Crypto, Hmac, PublicKey, Signature};
use hmac::{Mac, SimpleHmac};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

pub struct SoftCrypto;

fn mac<D>(key: &[u8], data: &[u8]) -> Vec<u8>
where
    D: Digest + hmac::digest::core_api::BlockSizeUser,
{
    // SimpleHmac: any key length, no fixed block-size core needed.
    let mut m = <SimpleHmac<D> as hmac::digest::KeyInit>::new_from_slice(key)
        .expect("HMAC takes keys of any length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

impl Crypto for SoftCrypto {
    fn hmac_sign(&self, algorithm: Hmac, key: &[u8], data: &[u8]) -> Vec<u8> {
        match algorithm {
            Hmac::Sha256 => mac::<Sha256>(key, data),
            Hmac::Sha384 => mac::<Sha384>(key, data),
            Hmac::Sha512 => mac::<Sha512>(key, data),
            Hmac::Sha1 => mac::<Sha1>(key, data),
            Hmac::Md5 => mac::<md5::Md5>(key, data),
        }
    }

    fn hmac_verify(&self, algorithm: Hmac, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.hmac_sign(algorithm, key, data);
        expected.len() == tag.len() && bool::from(expected.ct_eq(tag))
    }

    fn verify(
        &self,
        algorithm: Signature,
        key: PublicKey<'_>,
        data: &[u8],
        signature: &[u8],
    ) -> Result<bool, String> {
        let key = match key {
            PublicKey::Encoded(bytes) => rsa_key(bytes)?,
            PublicKey::Rsa { n, e } => {
                RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e))
                    .map_err(|e| format!("RSA key: {e}"))?
            }
        };
        let result = match algorithm {
            Signature::RsaPkcs1Sha1 => {
                key.verify(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(data), signature)
            }
            Signature::RsaPkcs1Sha256 => key.verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(data),
                signature,
            ),
            Signature::RsaPssSha256 => {
                key.verify(Pss::new::<Sha256>(), &Sha256::digest(data), signature)
            }
            Signature::EcdsaP256Sha256 | Signature::Ed25519 => {
                return Err("ES256 and EdDSA tokens are not verified by the edge function".into())
            }
        };
        Ok(result.is_ok())
    }
}

/// An RSA public key as PEM or DER, SubjectPublicKeyInfo or PKCS#1.
fn rsa_key(bytes: &[u8]) -> Result<RsaPublicKey, String> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if text.contains("-----BEGIN") {
            return RsaPublicKey::from_public_key_pem(text)
                .or_else(|_| RsaPublicKey::from_pkcs1_pem(text))
                .map_err(|e| format!("RSA key (PEM): {e}"));
        }
    }
    RsaPublicKey::from_public_key_der(bytes)
        .or_else(|_| RsaPublicKey::from_pkcs1_der(bytes))
        .map_err(|e| format!("RSA key (DER): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_known_vectors() {
        // RFC 4231 test case 2.
        let tag = SoftCrypto.hmac_sign(Hmac::Sha256, b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            tag.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(SoftCrypto.hmac_verify(
            Hmac::Sha256,
            b"Jefe",
            b"what do ya want for nothing?",
            &tag
        ));
        assert!(!SoftCrypto.hmac_verify(
            Hmac::Sha256,
            b"Jefe",
            b"what do ya want for nothing!",
            &tag
        ));
        assert!(!SoftCrypto.hmac_verify(Hmac::Sha256, b"Jefe", b"x", &tag[..31]));
    }
}
