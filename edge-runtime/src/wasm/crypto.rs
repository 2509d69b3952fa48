//! The `crypto` import: HMAC, signature verification and SHA-256 with `ring`, at native
//! speed, so token checks cost microseconds, not a Wasm big-integer library.

use super::bindings::edge::module::crypto::{self, HmacAlgorithm, SignatureAlgorithm};
use super::state::ModuleState;
use ring::{digest, hmac, signature};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

fn hmac_algorithm(a: HmacAlgorithm) -> Option<hmac::Algorithm> {
    Some(match a {
        HmacAlgorithm::Sha256 => hmac::HMAC_SHA256,
        HmacAlgorithm::Sha384 => hmac::HMAC_SHA384,
        HmacAlgorithm::Sha512 => hmac::HMAC_SHA512,
        HmacAlgorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        HmacAlgorithm::Md5 => return None,
    })
}

/// HMAC-MD5 for the token formats that still sign with it; ring has no MD5, so the
/// RustCrypto `hmac` and `md-5` crates compute it.
type HmacMd5 = ::hmac::Hmac<md5::Md5>;

fn hmac_md5(key: &[u8]) -> HmacMd5 {
    use ::hmac::Mac;
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    HmacMd5::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

pub fn hmac_sign(a: HmacAlgorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    let Some(algorithm) = hmac_algorithm(a) else {
        use ::hmac::Mac;
        let mut mac = hmac_md5(key);
        mac.update(data);
        return mac.finalize().into_bytes().to_vec();
    };
    let key = hmac::Key::new(algorithm, key);
    hmac::sign(&key, data).as_ref().to_vec()
}

/// Constant-time (ring and `hmac` compare the tags so).
pub fn hmac_verify(a: HmacAlgorithm, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    let Some(algorithm) = hmac_algorithm(a) else {
        use ::hmac::Mac;
        let mut mac = hmac_md5(key);
        mac.update(data);
        return mac.verify_slice(tag).is_ok();
    };
    let key = hmac::Key::new(algorithm, key);
    hmac::verify(&key, data, tag).is_ok()
}

fn verification(a: SignatureAlgorithm) -> &'static dyn signature::VerificationAlgorithm {
    match a {
        SignatureAlgorithm::RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        SignatureAlgorithm::RsaPkcs1Sha1 => {
            &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
        }
        SignatureAlgorithm::RsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
        SignatureAlgorithm::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_FIXED,
        SignatureAlgorithm::EcdsaP256Sha256Der => &signature::ECDSA_P256_SHA256_ASN1,
        SignatureAlgorithm::Ed25519 => &signature::ED25519,
    }
}

/// The key bytes ring wants: PKCS#1 `RSAPublicKey` for RSA, the point for P-256, the 32
/// raw bytes for Ed25519. Accepts those, a DER `SubjectPublicKeyInfo`, or its PEM.
fn public_key_bytes(key: &[u8]) -> Result<Vec<u8>, String> {
    if key.starts_with(b"-----BEGIN") {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(key)
            .map_err(|e| format!("public key PEM: {e}"))?;
        return spki_key(spki.as_ref()).map(<[u8]>::to_vec);
    }
    // A DER SEQUENCE whose first element is itself a SEQUENCE (the algorithm) is an SPKI;
    // an RSAPublicKey starts with an INTEGER.
    if key.first() == Some(&0x30) {
        let (_, body, _) = der_element(key).ok_or("public key: malformed DER")?;
        if body.first() == Some(&0x30) {
            return spki_key(key).map(<[u8]>::to_vec);
        }
    }
    Ok(key.to_vec())
}

/// Splits one DER element into (tag, contents, rest). Hand-written because this is all the
/// DER the host reads: the two fields of a `SubjectPublicKeyInfo`.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// `SEQUENCE { algorithm SEQUENCE, subjectPublicKey BIT STRING }` → the key bits.
fn spki_key(der: &[u8]) -> Result<&[u8], String> {
    let malformed = || "public key: malformed SubjectPublicKeyInfo".to_owned();
    let (tag, body, _) = der_element(der).ok_or_else(malformed)?;
    if tag != 0x30 {
        return Err(malformed());
    }
    let (tag, _, rest) = der_element(body).ok_or_else(malformed)?;
    if tag != 0x30 {
        return Err(malformed());
    }
    let (tag, bits, _) = der_element(rest).ok_or_else(malformed)?;
    match bits.split_first() {
        Some((0, key)) if tag == 0x03 => Ok(key),
        _ => Err(malformed()),
    }
}

pub fn verify_signature(
    a: SignatureAlgorithm,
    key: &[u8],
    data: &[u8],
    sig: &[u8],
) -> Result<bool, String> {
    let key = public_key_bytes(key)?;
    let expected_len = match a {
        SignatureAlgorithm::Ed25519 => Some(32),
        SignatureAlgorithm::EcdsaP256Sha256 | SignatureAlgorithm::EcdsaP256Sha256Der => Some(65),
        _ => None,
    };
    if expected_len.is_some_and(|n| n != key.len()) {
        return Err(format!(
            "public key is {} bytes, not a key for this algorithm",
            key.len()
        ));
    }
    let verifier = signature::UnparsedPublicKey::new(verification(a), &key);
    Ok(verifier.verify(data, sig).is_ok())
}

pub fn verify_rsa_components(
    a: SignatureAlgorithm,
    n: &[u8],
    e: &[u8],
    data: &[u8],
    sig: &[u8],
) -> Result<bool, String> {
    let params = match a {
        SignatureAlgorithm::RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        SignatureAlgorithm::RsaPkcs1Sha1 => {
            &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
        }
        SignatureAlgorithm::RsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
        _ => return Err("modulus and exponent describe an RSA key only".into()),
    };
    let key = signature::RsaPublicKeyComponents { n, e };
    Ok(key.verify(params, data, sig).is_ok())
}

/// Signatures that verified recently, by a SHA-256 of everything verified (algorithm,
/// key, data, signature). A player presents the same token on every segment request, and
/// a P-256 or RSA verification costs tens of microseconds where this lookup costs one;
/// only successes are kept, so an entry can only ever repeat a true answer.
pub struct VerifiedSignatures {
    entries: Mutex<lru::LruCache<[u8; 32], ()>>,
}

impl Default for VerifiedSignatures {
    fn default() -> Self {
        VerifiedSignatures::new(16_384)
    }
}

impl VerifiedSignatures {
    pub fn new(capacity: usize) -> Self {
        VerifiedSignatures {
            entries: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(capacity).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }

    /// Each part is length-prefixed, so no two different inputs hash the same bytes.
    fn id(a: SignatureAlgorithm, key: &[&[u8]], data: &[u8], sig: &[u8]) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&[a as u8]);
        for part in key.iter().chain([&data, &sig]) {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(ctx.finish().as_ref());
        id
    }

    fn contains(&self, id: &[u8; 32]) -> bool {
        // Plain data behind the lock: a poisoned lock is still usable.
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(id).is_some()
    }

    fn insert(&self, id: [u8; 32]) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.put(id, ());
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl crypto::Host for ModuleState {
    fn hmac_sign(
        &mut self,
        a: HmacAlgorithm,
        key: Vec<u8>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Vec<u8>> {
        Ok(hmac_sign(a, &key, &data))
    }
    fn hmac_verify(
        &mut self,
        a: HmacAlgorithm,
        key: Vec<u8>,
        data: Vec<u8>,
        tag: Vec<u8>,
    ) -> wasmtime::Result<bool> {
        Ok(hmac_verify(a, &key, &data, &tag))
    }
    fn verify_signature(
        &mut self,
        a: SignatureAlgorithm,
        key: Vec<u8>,
        data: Vec<u8>,
        sig: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, String>> {
        let cache = &self.services.verified;
        let id = VerifiedSignatures::id(a, &[b"spki", &key], &data, &sig);
        if cache.contains(&id) {
            return Ok(Ok(true));
        }
        let result = verify_signature(a, &key, &data, &sig);
        if result == Ok(true) {
            cache.insert(id);
        }
        Ok(result)
    }
    fn verify_rsa_components(
        &mut self,
        a: SignatureAlgorithm,
        n: Vec<u8>,
        e: Vec<u8>,
        data: Vec<u8>,
        sig: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, String>> {
        let cache = &self.services.verified;
        let id = VerifiedSignatures::id(a, &[b"rsa", &n, &e], &data, &sig);
        if cache.contains(&id) {
            return Ok(Ok(true));
        }
        let result = verify_rsa_components(a, &n, &e, &data, &sig);
        if result == Ok(true) {
            cache.insert(id);
        }
        Ok(result)
    }
    fn sha256(&mut self, data: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        Ok(digest::digest(&digest::SHA256, &data).as_ref().to_vec())
    }
    fn constant_time_eq(&mut self, a: Vec<u8>, b: Vec<u8>) -> wasmtime::Result<bool> {
        Ok(bool::from(a.ct_eq(&b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let tag = hmac_sign(
            HmacAlgorithm::Sha256,
            b"Jefe",
            b"what do ya want for nothing?",
        );
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(hmac_verify(
            HmacAlgorithm::Sha256,
            b"Jefe",
            b"what do ya want for nothing?",
            &tag
        ));
        assert!(!hmac_verify(
            HmacAlgorithm::Sha256,
            b"Jefe",
            b"what do ya want",
            &tag
        ));
        assert!(!hmac_verify(
            HmacAlgorithm::Sha384,
            b"Jefe",
            b"what do ya want for nothing?",
            &tag
        ));
    }

    #[test]
    fn hmac_sha384_matches_rfc4231_case_2() {
        let tag = hmac_sign(
            HmacAlgorithm::Sha384,
            b"Jefe",
            b"what do ya want for nothing?",
        );
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
             8e2240ca5e69e2c78b3239ecfab21649"
        );
        assert!(hmac_verify(
            HmacAlgorithm::Sha384,
            b"Jefe",
            b"what do ya want for nothing?",
            &tag
        ));
        assert!(!hmac_verify(
            HmacAlgorithm::Sha384,
            b"Jefe",
            b"what do ya want for nothing!",
            &tag
        ));
    }

    #[test]
    fn only_verified_signatures_are_remembered_and_ids_separate_inputs() {
        let cache = VerifiedSignatures::new(2);
        let a = SignatureAlgorithm::Ed25519;
        let id = VerifiedSignatures::id(a, &[b"k"], b"data", b"sig");
        assert_ne!(id, VerifiedSignatures::id(a, &[b"k"], b"dat", b"asig"));
        assert_ne!(id, VerifiedSignatures::id(a, &[b"kd"], b"ata", b"sig"));
        assert_ne!(
            id,
            VerifiedSignatures::id(SignatureAlgorithm::RsaPkcs1Sha1, &[b"k"], b"data", b"sig")
        );
        assert!(!cache.contains(&id));
        cache.insert(id);
        assert!(cache.contains(&id));
        cache.insert([1; 32]);
        cache.insert([2; 32]);
        assert_eq!(cache.len(), 2);
        assert!(!cache.contains(&id), "the oldest is evicted past the bound");
    }

    #[test]
    fn ed25519_raw_and_spki() {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let sig = pair.sign(b"msg");
        let raw = pair.public_key().as_ref();
        assert_eq!(
            verify_signature(SignatureAlgorithm::Ed25519, raw, b"msg", sig.as_ref()),
            Ok(true)
        );
        assert_eq!(
            verify_signature(SignatureAlgorithm::Ed25519, raw, b"msG", sig.as_ref()),
            Ok(false)
        );
        // SPKI: the fixed Ed25519 prefix (RFC 8410) + the key.
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(raw);
        assert_eq!(
            verify_signature(SignatureAlgorithm::Ed25519, &spki, b"msg", sig.as_ref()),
            Ok(true)
        );
        assert!(verify_signature(
            SignatureAlgorithm::Ed25519,
            &raw[..16],
            b"msg",
            sig.as_ref()
        )
        .is_err());
    }

    #[test]
    fn ecdsa_p256_fixed_and_der() {
        let rng = SystemRandom::new();
        for (sign_alg, verify_alg) in [
            (
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                SignatureAlgorithm::EcdsaP256Sha256,
            ),
            (
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                SignatureAlgorithm::EcdsaP256Sha256Der,
            ),
        ] {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(sign_alg, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(sign_alg, pkcs8.as_ref(), &rng).unwrap();
            let sig = pair.sign(&rng, b"payload").unwrap();
            let public = pair.public_key().as_ref();
            assert_eq!(
                verify_signature(verify_alg, public, b"payload", sig.as_ref()),
                Ok(true)
            );
            assert_eq!(
                verify_signature(verify_alg, public, b"payloaD", sig.as_ref()),
                Ok(false)
            );
        }
    }

    #[test]
    fn rsa_from_pem_der_and_components() {
        // ring cannot generate RSA keys: this 2048-bit key was made once with openssl
        // for the tests (test data only, never used elsewhere).
        let key_pem = include_str!("testdata/rsa2048.pem");
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let pair = signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
        let rng = SystemRandom::new();
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(&signature::RSA_PKCS1_SHA256, &rng, b"data", &mut sig)
            .unwrap();
        let pkcs1 = pair.public_key().as_ref();
        assert_eq!(
            verify_signature(SignatureAlgorithm::RsaPkcs1Sha256, pkcs1, b"data", &sig),
            Ok(true)
        );
        assert_eq!(
            verify_signature(SignatureAlgorithm::RsaPkcs1Sha256, pkcs1, b"dat4", &sig),
            Ok(false)
        );
        let pub_pem = include_str!("testdata/rsa2048.pub.pem");
        assert_eq!(
            verify_signature(
                SignatureAlgorithm::RsaPkcs1Sha256,
                pub_pem.as_bytes(),
                b"data",
                &sig
            ),
            Ok(true)
        );
        let components = pair.public().into();
        let signature::RsaPublicKeyComponents::<Vec<u8>> { n, e } = components;
        assert_eq!(
            verify_rsa_components(SignatureAlgorithm::RsaPkcs1Sha256, &n, &e, b"data", &sig),
            Ok(true)
        );
        assert!(verify_rsa_components(SignatureAlgorithm::Ed25519, &n, &e, b"data", &sig).is_err());
    }

    #[test]
    fn malformed_keys_are_errors() {
        assert!(verify_signature(
            SignatureAlgorithm::Ed25519,
            b"-----BEGIN PUBLIC KEY-----\nzz\n",
            b"",
            b""
        )
        .is_err());
        assert!(public_key_bytes(&[0x30, 0x05, 0x30]).is_err());
    }
}
