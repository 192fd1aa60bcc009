//! Environment secrets at rest: generated once per environment, sealed with XChaCha20-Poly1305
//! under the control plane's master key (`HANGAR_MASTER_KEY`), with the environment's id as
//! associated data so a sealed blob cannot be moved to another environment. Layout:
//! version (1 byte) ‖ nonce (24 bytes) ‖ ciphertext and tag.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hangar_tenants::api::EnvironmentSecrets;
use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};
use uuid::Uuid;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "HANGAR_MASTER_KEY must be 32 bytes, base64-encoded (for example: openssl rand -base64 32)"
    )]
    BadMasterKey,
    #[error("failed to seal the secrets of environment {0}")]
    Seal(Uuid),
    #[error("failed to open the secrets of environment {0}: wrong master key or tampered data")]
    Open(Uuid),
}

/// The control plane's master key.
#[derive(Clone)]
pub struct MasterKey(SecretSlice<u8>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses the base64 form of a 32-byte key.
    pub fn parse(base64: &str) -> Result<Self, SecretsError> {
        let bytes = STANDARD
            .decode(base64.trim())
            .map_err(|_| SecretsError::BadMasterKey)?;
        if bytes.len() != 32 {
            return Err(SecretsError::BadMasterKey);
        }
        Ok(Self(SecretSlice::from(bytes)))
    }

    /// A new random key, in its base64 form.
    pub fn generate() -> String {
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        STANDARD.encode(k)
    }

    /// A key for `purpose` only, derived from this one (HMAC-SHA256 of the purpose): what the
    /// replicas that share the master key also share, without using it for two things.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.expose_secret().into())
    }

    pub fn seal(&self, env: Uuid, secrets: &EnvironmentSecrets) -> Result<Vec<u8>, SecretsError> {
        let plain = serde_json::to_vec(secrets).map_err(|_| SecretsError::Seal(env))?;
        self.seal_bytes(env.as_bytes(), &plain)
            .ok_or(SecretsError::Seal(env))
    }

    pub fn open(&self, env: Uuid, blob: &[u8]) -> Result<EnvironmentSecrets, SecretsError> {
        let plain = self
            .open_bytes(env.as_bytes(), blob)
            .ok_or(SecretsError::Open(env))?;
        serde_json::from_slice(&plain).map_err(|_| SecretsError::Open(env))
    }

    /// Encrypts and authenticates `plain`, bound to `aad` (what it is for: an environment's id,
    /// a purpose string), so it opens only with the same key and the same `aad`.
    pub fn seal_bytes(&self, aad: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            .ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// Opens what `seal_bytes` made with the same `aad`; `None` if it was made otherwise or
    /// tampered with.
    pub fn open_bytes(&self, aad: &[u8], blob: &[u8]) -> Option<Vec<u8>> {
        if blob.len() < 1 + NONCE_LEN || blob[0] != VERSION {
            return None;
        }
        let (nonce, sealed) = blob[1..].split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
            .ok()
    }
}

/// Fresh secrets for a new environment.
pub fn generate() -> EnvironmentSecrets {
    let mut fernet = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut fernet);
    let word = |n| Alphanumeric.sample_string(&mut rand::thread_rng(), n);
    EnvironmentSecrets {
        fernet_key: URL_SAFE.encode(fernet),
        jwt_secret: word(48),
        api_secret_key: word(48),
        db_password: word(32),
        broker_password: word(32),
        admin_password: word(32),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_environment() {
        let key = MasterKey::parse(&MasterKey::generate()).unwrap();
        let other = MasterKey::parse(&MasterKey::generate()).unwrap();
        let (env, elsewhere) = (Uuid::new_v4(), Uuid::new_v4());
        let s = generate();
        let blob = key.seal(env, &s).unwrap();
        assert_eq!(key.open(env, &blob).unwrap(), s);
        assert!(other.open(env, &blob).is_err());
        assert!(
            key.open(elsewhere, &blob).is_err(),
            "bound to its environment"
        );
        let mut tampered = blob.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(key.open(env, &tampered).is_err());
        assert!(!String::from_utf8_lossy(&blob).contains(&s.db_password));
    }

    #[test]
    fn a_fernet_key_is_urlsafe_base64_of_32_bytes() {
        let k = generate().fernet_key;
        assert_eq!(URL_SAFE.decode(&k).unwrap().len(), 32);
        assert_ne!(generate(), generate());
    }

    #[test]
    fn master_keys_must_be_32_bytes_of_base64() {
        assert!(MasterKey::parse("not base64!").is_err());
        assert!(MasterKey::parse(&STANDARD.encode([0u8; 16])).is_err());
        assert!(MasterKey::parse(&STANDARD.encode([7u8; 32])).is_ok());
    }
}
