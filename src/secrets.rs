//! Cabinet credentials: MQTT tokens (stored as hashes) and frame-signing keys (stored sealed).
//!
//! A token is 32 random bytes, so a plain SHA-256 is enough to store it: there is nothing to
//! brute-force. The frame key must be readable by Heft to verify HMACs, so it is sealed with
//! AES-256-GCM under a key that lives outside the database (`security.seal_key[_file]`).

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
pub struct SealKey(Aes256Gcm);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(***)")
    }
}

impl SealKey {
    pub fn from_base64(text: &str) -> Result<SealKey, SecretError> {
        let bytes = B64.decode(text.trim()).map_err(|_| SecretError::BadSealKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadSealKey)?;
        Ok(SealKey(Aes256Gcm::new(&key.into())))
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
        let sealed = self.0.encrypt(Nonce::from_slice(&nonce), plain).unwrap_or_default();
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
        self.0.decrypt(Nonce::from_slice(nonce), body).map_err(|_| SecretError::Unseal)
    }
}

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
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("sub/seal.key");
        let a = SealKey::load_or_create("", &file).expect("create");
        let sealed = a.seal(b"x");
        let b = SealKey::load_or_create("", &file).expect("reload");
        assert_eq!(b.unseal(&sealed).expect("same key"), b"x");
    }
}
