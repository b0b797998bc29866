//! RSA keys and SHA256withRSA (PKCS#1 v1.5, Base64), which both platforms sign with: WeChat Pay
//! v3 (`WECHATPAY2-SHA256-RSA2048`) and Alipay (`RSA2`).
//!
//! A key setting of `sim` means the simulator's demo key, shipped in `src/pay/sim/keys/`. Those
//! keys are public knowledge; config validation refuses them unless the platform URL is local.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

/// The simulator's key pairs: merchant / application keys (Heft's side) and platform keys (the
/// simulator's side).
pub mod sim {
    pub const WECHAT_MERCHANT_KEY: &str = include_str!("sim/keys/wechat-merchant.key.pem");
    pub const WECHAT_MERCHANT_PUB: &str = include_str!("sim/keys/wechat-merchant.pub.pem");
    pub const WECHAT_PLATFORM_KEY: &str = include_str!("sim/keys/wechat-platform.key.pem");
    pub const WECHAT_PLATFORM_PUB: &str = include_str!("sim/keys/wechat-platform.pub.pem");
    pub const ALIPAY_APP_KEY: &str = include_str!("sim/keys/alipay-app.key.pem");
    pub const ALIPAY_APP_PUB: &str = include_str!("sim/keys/alipay-app.pub.pem");
    pub const ALIPAY_PLATFORM_KEY: &str = include_str!("sim/keys/alipay-platform.key.pem");
    pub const ALIPAY_PLATFORM_PUB: &str = include_str!("sim/keys/alipay-platform.pub.pem");
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("key {what}: not a PKCS#8 / SPKI PEM RSA key: {message}")]
    Parse { what: String, message: String },
}

fn read(spec: &str, sim_pem: &str) -> Result<String, KeyError> {
    if spec == "sim" {
        return Ok(sim_pem.to_string());
    }
    std::fs::read_to_string(spec).map_err(|source| KeyError::Read { path: spec.to_string(), source })
}

/// A private key from a PEM file (PKCS#8 `BEGIN PRIVATE KEY` or PKCS#1 `BEGIN RSA PRIVATE KEY`),
/// or the simulator's when `spec` is `sim`.
pub fn load_private(spec: &str, sim_pem: &str) -> Result<RsaPrivateKey, KeyError> {
    parse_private(&read(spec, sim_pem)?).map_err(|message| KeyError::Parse { what: spec.to_string(), message })
}

/// A public key from a PEM file (SPKI `BEGIN PUBLIC KEY`, PKCS#1 `BEGIN RSA PUBLIC KEY`), or a
/// certificate's… not supported: WeChat Pay's public-key mode and Alipay's key mode both give a
/// plain public key.
pub fn load_public(spec: &str, sim_pem: &str) -> Result<RsaPublicKey, KeyError> {
    parse_public(&read(spec, sim_pem)?).map_err(|message| KeyError::Parse { what: spec.to_string(), message })
}

pub fn parse_private(pem: &str) -> Result<RsaPrivateKey, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    let pem = pem.trim();
    RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|e| RsaPrivateKey::from_pkcs1_pem(pem).map_err(|_| e))
        .map_err(|e| e.to_string())
}

pub fn parse_public(pem: &str) -> Result<RsaPublicKey, String> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    let pem = pem.trim();
    RsaPublicKey::from_public_key_pem(pem)
        .or_else(|e| RsaPublicKey::from_pkcs1_pem(pem).map_err(|_| e))
        .map_err(|e| e.to_string())
}

/// A public key from Alipay's console form: the Base64 of the SPKI DER, no PEM armour.
pub fn parse_public_base64(b64: &str) -> Result<RsaPublicKey, String> {
    let der = STANDARD.decode(b64.trim()).map_err(|e| e.to_string())?;
    RsaPublicKey::from_public_key_der(&der).map_err(|e| e.to_string())
}

/// SPKI PEM of a public key (the simulator hands it out; tests print it).
pub fn public_pem(key: &RsaPublicKey) -> String {
    key.to_public_key_pem(rsa::pkcs8::LineEnding::LF).unwrap_or_default()
}

/// Base64(RSA-PKCS1v15-SHA256(key, message)).
pub fn sign_sha256(key: &RsaPrivateKey, message: &[u8]) -> String {
    let signer = SigningKey::<Sha256>::new(key.clone());
    STANDARD.encode(signer.sign(message).to_bytes())
}

/// Whether `signature_b64` is a valid SHA256withRSA signature of `message`.
pub fn verify_sha256(key: &RsaPublicKey, message: &[u8], signature_b64: &str) -> bool {
    let Ok(raw) = STANDARD.decode(signature_b64.trim()) else { return false };
    let Ok(signature) = Signature::try_from(raw.as_slice()) else { return false };
    VerifyingKey::<Sha256>::new(key.clone()).verify(message, &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_keys_load_and_pair() {
        let pairs = [
            (sim::WECHAT_MERCHANT_KEY, sim::WECHAT_MERCHANT_PUB),
            (sim::WECHAT_PLATFORM_KEY, sim::WECHAT_PLATFORM_PUB),
            (sim::ALIPAY_APP_KEY, sim::ALIPAY_APP_PUB),
            (sim::ALIPAY_PLATFORM_KEY, sim::ALIPAY_PLATFORM_PUB),
        ];
        for (private, public) in pairs {
            let k = load_private("sim", private).expect("private");
            let p = load_public("sim", public).expect("public");
            let sig = sign_sha256(&k, b"message");
            assert!(verify_sha256(&p, b"message", &sig));
            assert!(!verify_sha256(&p, b"messagE", &sig));
            assert!(!verify_sha256(&p, b"message", "not base64!"));
        }
        // Different pairs do not verify each other.
        let k = load_private("sim", sim::WECHAT_MERCHANT_KEY).expect("key");
        let other = load_public("sim", sim::ALIPAY_APP_PUB).expect("key");
        assert!(!verify_sha256(&other, b"m", &sign_sha256(&k, b"m")));
    }

    #[test]
    fn missing_and_bad_files_say_which() {
        let e = load_private("/nonexistent/key.pem", "").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/key.pem"), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.pem");
        std::fs::write(&path, "not a key").expect("write");
        let e = load_public(path.to_str().expect("utf8"), "").unwrap_err().to_string();
        assert!(e.contains("bad.pem"), "{e}");
    }
}
