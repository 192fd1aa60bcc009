//! Who is calling: bearer tokens and the principals they stand for. Tenant tokens start with
//! `hgr_`, cell tokens with `hgc_`; both are 32 random base62 characters after the prefix
//! (~190 bits) and are stored only as SHA-256 hashes.

use hangar_tenants::api::Role;
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const TENANT_TOKEN_PREFIX: &str = "hgr_";
pub const CELL_TOKEN_PREFIX: &str = "hgc_";
const RANDOM_LEN: usize = 32;
/// How much of a token is kept in clear to recognise it in listings.
const SHOWN_PREFIX_LEN: usize = 10;

/// A freshly generated secret and what gets stored of it.
pub struct NewToken {
    pub secret: String,
    pub hash: Vec<u8>,
    pub shown_prefix: String,
}

pub fn generate(prefix: &str) -> NewToken {
    let secret = format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), RANDOM_LEN)
    );
    NewToken {
        hash: hash(&secret),
        shown_prefix: secret.chars().take(SHOWN_PREFIX_LEN).collect(),
        secret,
    }
}

pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Equality of two hashes in time independent of where they differ.
pub fn same_hash(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller of a request, once its token is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    PlatformAdmin,
    Tenant {
        token_id: Uuid,
        tenant_id: Uuid,
        tenant: String,
        role: Role,
    },
    Cell {
        id: Uuid,
        name: String,
    },
}

impl Principal {
    /// How the audit log names the caller.
    pub fn actor(&self) -> String {
        match self {
            Principal::PlatformAdmin => "platform-admin".to_owned(),
            Principal::Tenant { token_id, .. } => format!("token:{token_id}"),
            Principal::Cell { name, .. } => format!("cell:{name}"),
        }
    }
}

/// The caller and the request's id, as the service layer needs them (for authorisation and audit).
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let a = generate(TENANT_TOKEN_PREFIX);
        let b = generate(TENANT_TOKEN_PREFIX);
        assert!(a.secret.starts_with("hgr_"));
        assert_eq!(a.secret.len(), 4 + RANDOM_LEN);
        assert_ne!(a.secret, b.secret);
        assert!(same_hash(&a.hash, &hash(&a.secret)));
        assert!(!same_hash(&a.hash, &b.hash));
        assert!(a.secret.starts_with(&a.shown_prefix));
    }
}
