//! RSA keys and SHA256withRSA (PKCS#1 v1.5, Base64), which both platforms sign with: WeChat Pay
//! v3 (`WECHATPAY2-SHA256-RSA2048`) and Alipay (`RSA2`).
//!
//! A key setting of `sim` means the simulator's demo key, shipped in `src/pay/sim/keys/`. Those
//! keys are public knowledge; config validation refuses them unless the platform URL is local.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{self as ring_sig, RsaKeyPair, UnparsedPublicKey};

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

/// An RSA private key (2048 to 8192 bits), signing with ring: constant-time, unlike the `rsa`
/// crate (RUSTSEC-2023-0071), and several times faster.
#[derive(Clone)]
pub struct PrivateKey(Arc<RsaKeyPair>);

/// An RSA public key, kept as its PKCS#1 `RSAPublicKey` DER, the form ring verifies with.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(Arc<[u8]>);

// Never print key material, not even in a debug log.
impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({} bits)", self.0.public().modulus_len() * 8)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicKey")
    }
}

impl PrivateKey {
    /// The public half.
    pub fn to_public_key(&self) -> PublicKey {
        PublicKey(self.0.public().as_ref().into())
    }
}

fn read(spec: &str, sim_pem: &str) -> Result<String, KeyError> {
    if spec == "sim" {
        return Ok(sim_pem.to_string());
    }
    std::fs::read_to_string(spec).map_err(|source| KeyError::Read { path: spec.to_string(), source })
}

/// A private key from a PEM file (PKCS#8 `BEGIN PRIVATE KEY` or PKCS#1 `BEGIN RSA PRIVATE KEY`),
/// or the simulator's when `spec` is `sim`.
pub fn load_private(spec: &str, sim_pem: &str) -> Result<PrivateKey, KeyError> {
    parse_private(&read(spec, sim_pem)?).map_err(|message| KeyError::Parse { what: spec.to_string(), message })
}

/// A public key from a PEM file (SPKI `BEGIN PUBLIC KEY`, PKCS#1 `BEGIN RSA PUBLIC KEY`), or a
/// certificate's… not supported: WeChat Pay's public-key mode and Alipay's key mode both give a
/// plain public key.
pub fn load_public(spec: &str, sim_pem: &str) -> Result<PublicKey, KeyError> {
    parse_public(&read(spec, sim_pem)?).map_err(|message| KeyError::Parse { what: spec.to_string(), message })
}

pub fn parse_private(pem: &str) -> Result<PrivateKey, String> {
    let (label, der) = pem::decode(pem)?;
    let pair = match label.as_str() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        other => return Err(format!("a PEM \"{other}\" block, not a private key")),
    };
    pair.map(|p| PrivateKey(Arc::new(p))).map_err(|e| format!("not a usable RSA key ({e})"))
}

pub fn parse_public(pem: &str) -> Result<PublicKey, String> {
    let (label, der) = pem::decode(pem)?;
    match label.as_str() {
        "PUBLIC KEY" => public_from_spki(&der),
        "RSA PUBLIC KEY" => public_from_pkcs1(der),
        other => Err(format!("a PEM \"{other}\" block, not a public key")),
    }
}

/// A public key from Alipay's console form: the Base64 of the SPKI DER, no PEM armour.
pub fn parse_public_base64(b64: &str) -> Result<PublicKey, String> {
    let der = STANDARD.decode(b64.trim()).map_err(|e| e.to_string())?;
    public_from_spki(&der)
}

fn public_from_spki(der: &[u8]) -> Result<PublicKey, String> {
    let pkcs1 = der::spki_rsa_key(der).ok_or("not an RSA SubjectPublicKeyInfo")?;
    public_from_pkcs1(pkcs1.to_vec())
}

fn public_from_pkcs1(der: Vec<u8>) -> Result<PublicKey, String> {
    let bits = der::rsa_modulus_bits(&der).ok_or("not an RSAPublicKey")?;
    if !(2048..=8192).contains(&bits) {
        return Err(format!("a {bits}-bit key; the platforms use 2048 to 8192 bits"));
    }
    Ok(PublicKey(der.into()))
}

/// SPKI PEM of a public key (the simulator hands it out; tests print it).
pub fn public_pem(key: &PublicKey) -> String {
    pem::encode("PUBLIC KEY", &der::spki_of_rsa_key(&key.0))
}

/// Base64(RSA-PKCS1v15-SHA256(key, message)).
pub fn sign_sha256(key: &PrivateKey, message: &[u8]) -> String {
    let mut signature = vec![0; key.0.public().modulus_len()];
    // Fails only for a buffer of the wrong size, which the line above rules out.
    if let Err(e) = key.0.sign(&ring_sig::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), message, &mut signature) {
        tracing::error!(error = %e, "RSA signing failed");
    }
    STANDARD.encode(signature)
}

/// Whether `signature_b64` is a valid SHA256withRSA signature of `message`.
pub fn verify_sha256(key: &PublicKey, message: &[u8], signature_b64: &str) -> bool {
    let Ok(raw) = STANDARD.decode(signature_b64.trim()) else { return false };
    UnparsedPublicKey::new(&ring_sig::RSA_PKCS1_2048_8192_SHA256, &key.0[..]).verify(message, &raw).is_ok()
}

/// PEM armour: one block, its label and its DER.
mod pem {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    pub fn decode(text: &str) -> Result<(String, Vec<u8>), String> {
        let text = text.trim();
        let begin = text.find("-----BEGIN ").ok_or("no PEM \"-----BEGIN\" line")?;
        let rest = &text[begin + "-----BEGIN ".len()..];
        let (label, rest) = rest.split_once("-----").ok_or("a broken PEM BEGIN line")?;
        let end = format!("-----END {label}-----");
        let body = &rest[..rest.find(&end).ok_or_else(|| format!("no \"{end}\" line"))?];
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = STANDARD.decode(b64).map_err(|e| format!("PEM body is not Base64: {e}"))?;
        Ok((label.to_string(), der))
    }

    pub fn encode(label: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }
}

/// The little DER an RSA public key needs: SPKI in and out, and the modulus size.
mod der {
    /// `1.2.840.113549.1.1.1` rsaEncryption, as DER.
    const RSA_ENCRYPTION: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

    /// One tag-length-value: (tag, value, the rest).
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            (rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize), &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    /// The PKCS#1 `RSAPublicKey` inside an RSA `SubjectPublicKeyInfo`.
    pub fn spki_rsa_key(spki: &[u8]) -> Option<&[u8]> {
        let (0x30, body, []) = tlv(spki)? else { return None };
        let (0x30, algorithm, rest) = tlv(body)? else { return None };
        let (0x03, bits, []) = tlv(rest)? else { return None };
        if !algorithm.starts_with(RSA_ENCRYPTION) {
            return None;
        }
        let (0, key) = bits.split_first()? else { return None };
        Some(key)
    }

    /// The modulus size in bits of a PKCS#1 `RSAPublicKey`.
    pub fn rsa_modulus_bits(pkcs1: &[u8]) -> Option<usize> {
        let (0x30, body, []) = tlv(pkcs1)? else { return None };
        let (0x02, n, rest) = tlv(body)? else { return None };
        let (0x02, _e, []) = tlv(rest)? else { return None };
        let n = &n[n.iter().position(|&b| b != 0)?..];
        Some(n.len() * 8 - n[0].leading_zeros() as usize)
    }

    fn encode(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = value.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(value);
        out
    }

    /// The `SubjectPublicKeyInfo` of a PKCS#1 `RSAPublicKey`.
    pub fn spki_of_rsa_key(pkcs1: &[u8]) -> Vec<u8> {
        let algorithm = encode(0x30, &[RSA_ENCRYPTION, &[0x05, 0x00]].concat());
        let bits = encode(0x03, &[&[0u8][..], pkcs1].concat());
        encode(0x30, &[algorithm, bits].concat())
    }
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
    fn public_keys_round_trip_through_pem_and_pkcs1() {
        let key = load_private("sim", sim::WECHAT_MERCHANT_KEY).expect("key");
        let public = key.to_public_key();
        // Our SPKI encoding is byte for byte what OpenSSL wrote.
        assert_eq!(public_pem(&public).trim(), sim::WECHAT_MERCHANT_PUB.trim());
        assert_eq!(parse_public(&public_pem(&public)).expect("spki"), public);
        let b64: String = sim::WECHAT_MERCHANT_PUB.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(parse_public_base64(&b64).expect("console form"), public);
        let pkcs1 = pem::encode("RSA PUBLIC KEY", &public.0);
        assert_eq!(parse_public(&pkcs1).expect("pkcs1"), public);
        assert!(format!("{key:?}").contains("2048 bits"), "{key:?}");
    }

    #[test]
    fn wrong_blocks_and_small_keys_are_refused() {
        let e = parse_private(sim::WECHAT_MERCHANT_PUB).unwrap_err();
        assert!(e.contains("not a private key"), "{e}");
        let e = parse_public(sim::WECHAT_MERCHANT_KEY).unwrap_err();
        assert!(e.contains("not a public key"), "{e}");
        assert!(parse_public("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
        // A 1024-bit key (openssl genrsa 1024), too weak for either platform.
        let small = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC7anIx1ZGl5+akpo3zhoBN+MLYsz3aVyf3ITbbOVpmiEWd1xUB3AfFUuTKT3R+xCRa5jGfeGP3VwQPlTiaEgcJz9UA29q0aAOqQdB6BRio24hny4M1LKuCSjsC+nedX0KA4Jdfxnc3Jb7I2y9q9QWOuRIqlJ3Su2YZ6bl2YmtkUQIDAQAB";
        let e = parse_public_base64(small).unwrap_err();
        assert!(e.contains("bits"), "{e}");
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
