//! Cabinet credentials: MQTT tokens (stored as hashes) and frame-signing keys (stored sealed).
//!
//! A token is 32 random bytes, so a plain SHA-256 is enough to store it: there is nothing to
//! brute-force. The frame key must be readable by Heft to verify HMACs, so it is sealed with
//! AES-256-GCM under a key that lives outside the database (`security.seal_key[_file]`).
//!
//! Operator passwords are chosen by people, so they are stored as argon2id hashes, which are
//! slow to brute-force on purpose.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("seal key must be base64 of exactly 32 bytes")]
    BadSealKey,
    #[error("sealed value is malformed or was sealed with another key")]
    Unseal,
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    #[error("seal key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
}

/// A fresh random secret as URL-safe base64 without padding (43 characters for 32 bytes).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    B64URL.encode(bytes)
}

/// A fresh 32-byte HMAC key, as the bytes and as the base64 the cabinet is given.
pub fn new_frame_key() -> ([u8; 32], String) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    (bytes, B64.encode(bytes))
}

/// Hex SHA-256 of a token, as stored in `cabinets.token_hash`.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compare a presented token with a stored hash in constant time.
pub fn token_matches(token: &str, stored_hash: &str) -> bool {
    let presented = hash_token(token);
    constant_time_eq(presented.as_bytes(), stored_hash.as_bytes())
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key that seals frame keys at rest.
#[derive(Clone)]
pub struct SealKey {
    cipher: Aes256Gcm,
    /// Kept to derive other keys from ([`SealKey::derive`]); never shown.
    raw: [u8; 32],
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(***)")
    }
}

impl SealKey {
    pub fn from_base64(text: &str) -> Result<SealKey, SecretError> {
        let bytes = B64.decode(text.trim()).map_err(|_| SecretError::BadSealKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadSealKey)?;
        Ok(SealKey { cipher: Aes256Gcm::new(&key.into()), raw: key })
    }

    /// A key for another purpose, derived from this one: HMAC-SHA256(seal key, `label`). Every
    /// node sharing the seal key derives the same one, so nothing more must be distributed.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        hmac_sha256(&self.raw, label.as_bytes())
    }

    /// The configured key, or the one in `file`, created (mode 0600) when it does not exist yet.
    pub fn load_or_create(configured: &str, file: &Path) -> Result<SealKey, SecretError> {
        if !configured.is_empty() {
            return SealKey::from_base64(configured);
        }
        let key_file_err = |source| SecretError::KeyFile { path: file.display().to_string(), source };
        match std::fs::read_to_string(file) {
            Ok(text) => SealKey::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(key_file_err)?;
                }
                let (_, text) = new_frame_key();
                write_private(file, &text).map_err(key_file_err)?;
                SealKey::from_base64(&text)
            }
            Err(e) => Err(key_file_err(e)),
        }
    }

    /// `base64(nonce ‖ ciphertext+tag)`.
    pub fn seal(&self, plain: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and a 12-byte nonce cannot fail for inputs this small.
        let sealed = self.cipher.encrypt(Nonce::from_slice(&nonce), plain).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    pub fn unseal(&self, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let bytes = B64.decode(sealed).map_err(|_| SecretError::Unseal)?;
        if bytes.len() < 12 + 16 {
            return Err(SecretError::Unseal);
        }
        let (nonce, body) = bytes.split_at(12);
        self.cipher.decrypt(Nonce::from_slice(nonce), body).map_err(|_| SecretError::Unseal)
    }
}

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// An argon2id hash of an operator's password as a PHC string (`$argon2id$v=19$m=…`), with the
/// crate's default cost and a fresh salt. CPU and memory heavy (about 19 MiB): call it on the
/// blocking pool.
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| SecretError::PasswordHash(e.to_string()))
}

/// Whether `password` matches a PHC string from [`hash_password`] (its own cost parameters are
/// used). A malformed stored hash matches nothing. As heavy as hashing: blocking pool only.
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash of a password nobody knows, made with the default parameters: verified against when a
/// login names no operator, so an unknown username costs the same time as a wrong password.
pub const DUMMY_PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$pdpqf1F5MPrd99N0O8DiZw$ODM4pDerm+gzyXfIz/6u5hKc1xIvnFdm5CmVPS8WiZA";

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_round_trip() {
        let t = new_token();
        assert_eq!(t.len(), 43);
        let h = hash_token(&t);
        assert!(token_matches(&t, &h));
        assert!(!token_matches("other", &h));
    }

    #[test]
    fn seal_round_trip_and_wrong_key() {
        let (_, k1) = new_frame_key();
        let (_, k2) = new_frame_key();
        let a = SealKey::from_base64(&k1).expect("key");
        let b = SealKey::from_base64(&k2).expect("key");
        let sealed = a.seal(b"frame key bytes");
        assert_eq!(a.unseal(&sealed).expect("unseal"), b"frame key bytes");
        assert!(b.unseal(&sealed).is_err());
        assert!(a.unseal("not base64!").is_err());
    }

    #[test]
    fn password_hash_round_trip() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("correct horse battery", "not a phc string"));
        assert_ne!(hash_password("correct horse battery").expect("hash"), h, "salted");
    }

    #[test]
    fn dummy_hash_costs_what_a_real_one_does() {
        use argon2::password_hash::PasswordHash;
        let dummy = PasswordHash::new(DUMMY_PASSWORD_HASH).expect("well formed");
        let real_text = hash_password("x").expect("hash");
        let real = PasswordHash::new(&real_text).expect("well formed");
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params, "regenerate DUMMY_PASSWORD_HASH with the current defaults");
        assert!(!verify_password("", DUMMY_PASSWORD_HASH));
    }

    #[test]
    fn derived_keys_follow_the_seal_key() {
        let (_, k1) = new_frame_key();
        let (_, k2) = new_frame_key();
        let a = SealKey::from_base64(&k1).expect("key");
        assert_eq!(a.derive("x"), SealKey::from_base64(&k1).expect("key").derive("x"));
        assert_ne!(a.derive("x"), a.derive("y"));
        assert_ne!(a.derive("x"), SealKey::from_base64(&k2).expect("key").derive("x"));
        // The label is the message and the seal key the HMAC key.
        assert_eq!(a.derive("x"), hmac_sha256(&B64.decode(&k1).expect("b64"), b"x"));
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("sub/seal.key");
        let a = SealKey::load_or_create("", &file).expect("create");
        let sealed = a.seal(b"x");
        let b = SealKey::load_or_create("", &file).expect("reload");
        assert_eq!(b.unseal(&sealed).expect("same key"), b"x");
    }
}
