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

/// What a token is, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Tenant,
    Cell,
    /// An access key of the MWAA-compatible API (its "hash" is the access key id itself,
    /// which is not secret: what proves the caller is the request's signature).
    AccessKey,
    /// No known prefix: the platform admin's token, or nothing.
    Other,
}

impl TokenKind {
    /// How the kind is stored (a portal session names the token it was opened with).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Cell => "cell",
            Self::AccessKey => "access_key",
            Self::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Tenant, Self::Cell, Self::AccessKey, Self::Other]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    pub fn of(token: &str) -> Self {
        if token.starts_with(TENANT_TOKEN_PREFIX) {
            Self::Tenant
        } else if token.starts_with(CELL_TOKEN_PREFIX) {
            Self::Cell
        } else {
            Self::Other
        }
    }
}

/// The token a caller authenticated with, as far as the control plane keeps it: enough to
/// resolve the same principal again later (a web session refers to it), never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub kind: TokenKind,
    pub hash: Vec<u8>,
}

/// The caller and the request's id, as the service layer needs them (for authorisation and audit).
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    pub request_id: Option<String>,
    pub credential: Credential,
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

/// Recently resolved tokens, so a busy client costs no database round trip per request.
/// Entries live `ttl`; only successful look-ups are kept (a new token works at once). A revoke
/// evicts at once on this replica, and on the others as soon as Postgres tells them
/// (`crate::changes::forget_principals`); within `ttl` at the latest.
#[derive(Debug)]
pub struct PrincipalCache {
    ttl: std::time::Duration,
    max_entries: usize,
    entries: std::sync::RwLock<std::collections::HashMap<Vec<u8>, (Principal, std::time::Instant)>>,
}

impl PrincipalCache {
    pub fn new(ttl: std::time::Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: Default::default(),
        }
    }

    pub fn get(&self, hash: &[u8]) -> Option<Principal> {
        let entries = self.entries.read().ok()?;
        let (p, at) = entries.get(hash)?;
        (at.elapsed() < self.ttl).then(|| p.clone())
    }

    pub fn put(&self, hash: Vec<u8>, principal: Principal) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= self.max_entries {
                let ttl = self.ttl;
                entries.retain(|_, (_, at)| at.elapsed() < ttl);
                if entries.len() >= self.max_entries {
                    entries.clear();
                }
            }
            entries.insert(hash, (principal, std::time::Instant::now()));
        }
    }

    /// Forgets everything (notices of revocations may have been missed).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }

    /// Forgets what `gone` names: `token:<id>` or `tenant:<id>` (anything else: everything).
    pub fn forget(&self, gone: &str) {
        let named = gone
            .split_once(':')
            .and_then(|(kind, id)| Some((kind, Uuid::parse_str(id).ok()?)));
        match named {
            Some(("token", id)) => self.evict_token(id),
            Some(("tenant", id)) => self.evict_tenant(id),
            _ => self.clear(),
        }
    }

    /// Forgets every token of a deleted tenant.
    pub fn evict_tenant(&self, tenant: Uuid) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(
                |_, (p, _)| !matches!(p, Principal::Tenant { tenant_id, .. } if *tenant_id == tenant),
            );
        }
    }

    /// Forgets a revoked tenant token.
    pub fn evict_token(&self, token_id: Uuid) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(
                |_, (p, _)| !matches!(p, Principal::Tenant { token_id: id, .. } if *id == token_id),
            );
        }
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use std::time::Duration;

    fn tenant(token_id: Uuid) -> Principal {
        Principal::Tenant {
            token_id,
            tenant_id: Uuid::nil(),
            tenant: "t".into(),
            role: Role::Viewer,
        }
    }

    #[test]
    fn keeps_entries_for_the_ttl_and_evicts_revoked_tokens() {
        let cache = PrincipalCache::new(Duration::from_secs(60), 10);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        cache.put(vec![1], tenant(a));
        cache.put(vec![2], tenant(b));
        assert_eq!(cache.get(&[1]), Some(tenant(a)));
        cache.evict_token(a);
        assert_eq!(cache.get(&[1]), None);
        assert_eq!(cache.get(&[2]), Some(tenant(b)));
        cache.evict_tenant(Uuid::nil());
        assert_eq!(cache.get(&[2]), None);
    }

    #[test]
    fn expired_entries_are_not_served_and_a_zero_ttl_disables_it() {
        let cache = PrincipalCache::new(Duration::from_millis(1), 10);
        cache.put(vec![1], tenant(Uuid::nil()));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get(&[1]), None);
        let off = PrincipalCache::new(Duration::ZERO, 10);
        off.put(vec![1], tenant(Uuid::nil()));
        assert_eq!(off.get(&[1]), None);
    }

    #[test]
    fn forgets_what_a_notice_names_and_everything_on_a_notice_it_cannot_read() {
        let cache = PrincipalCache::new(Duration::from_secs(60), 10);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        cache.put(vec![1], tenant(a));
        cache.put(vec![2], tenant(b));
        cache.forget(&format!("token:{a}"));
        assert_eq!(cache.get(&[1]), None);
        assert_eq!(cache.get(&[2]), Some(tenant(b)));
        cache.forget(&format!("tenant:{}", Uuid::new_v4()));
        assert_eq!(cache.get(&[2]), Some(tenant(b)));
        cache.forget(&format!("tenant:{}", Uuid::nil()));
        assert_eq!(cache.get(&[2]), None);
        cache.put(vec![3], tenant(a));
        cache.forget("token:not-an-id");
        assert_eq!(cache.get(&[3]), None);
    }

    #[test]
    fn stays_bounded() {
        let cache = PrincipalCache::new(Duration::from_secs(60), 3);
        for i in 0..10u8 {
            cache.put(vec![i], tenant(Uuid::nil()));
        }
        assert!(cache.entries.read().map(|e| e.len()).unwrap_or(99) <= 3);
    }
}
