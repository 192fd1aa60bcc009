//! A tenant's access keys: AWS-style credentials for the MWAA-compatible API. A key has a role
//! like a token; its secret is generated here, shown once, and kept sealed with the master key
//! (Signature V4 needs the secret itself to check a signature).

use hangar_tenants::api::{AccessKeyCreated, AccessKeyInfo, CreateAccessKey, Role};
use rand::distributions::{Alphanumeric, DistString};
use serde_json::json;
use uuid::Uuid;

use super::{ServiceError, Services, StoreContext};
use crate::auth::Actor;
use crate::persistence::{self, access_keys::NewAccessKey, audit::NewAudit};

/// Access key ids look like AWS's (20 upper-case characters), with a prefix of their own.
pub const ACCESS_KEY_PREFIX: &str = "HGKA";
const ACCESS_KEY_LEN: usize = 20;
/// 40 characters like AWS's secrets (~238 bits).
const SECRET_LEN: usize = 40;

/// What the sealed secret is bound to: the key's own id.
fn aad(id: Uuid) -> Vec<u8> {
    [b"access-key:".as_slice(), id.as_bytes()].concat()
}

fn new_access_key_id() -> String {
    let random = Alphanumeric
        .sample_string(&mut rand::thread_rng(), 64)
        .to_uppercase();
    let mut id = ACCESS_KEY_PREFIX.to_owned();
    id.extend(
        random
            .chars()
            .take(ACCESS_KEY_LEN - ACCESS_KEY_PREFIX.len()),
    );
    id
}

fn key_out(row: persistence::access_keys::AccessKeyRow) -> Result<AccessKeyInfo, ServiceError> {
    Ok(AccessKeyInfo {
        id: row.id,
        role: Role::parse(&row.role).ok_or_else(|| ServiceError::Corrupt {
            action: "read an access key's role",
            message: row.role.clone(),
        })?,
        name: row.name,
        access_key_id: row.access_key_id,
        created_at: row.created_at,
        last_used_at: row.last_used_at,
        revoked_at: row.revoked_at,
    })
}

/// A live key, once found: who holds it and its secret, to check a signature with.
pub struct KeyHolder {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant: String,
    pub role: Role,
    pub secret: secrecy::SecretString,
}

impl Services {
    pub async fn create_access_key(
        &self,
        actor: &Actor,
        tenant: &str,
        req: CreateAccessKey,
    ) -> Result<AccessKeyCreated, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Admin).await?;
        let name = super::tenants::credential_name(&req.name)?;
        let id = Uuid::new_v4();
        let access_key_id = new_access_key_id();
        let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), SECRET_LEN);
        let sealed = self
            .master_key
            .seal_bytes(&aad(id), secret.as_bytes())
            .ok_or(ServiceError::Corrupt {
                action: "seal an access key's secret",
                message: String::new(),
            })?;
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        let row = persistence::access_keys::insert(
            &mut tx,
            NewAccessKey {
                id,
                tenant_id: t.id,
                name,
                role: req.role.as_str(),
                access_key_id: &access_key_id,
                secret_sealed: &sealed,
            },
        )
        .await
        .store("create an access key")?;
        persistence::audit::insert(
            &mut tx,
            NewAudit {
                tenant_id: Some(t.id),
                actor: &actor.principal.actor(),
                action: "access_key.create",
                target: &format!("{}/access-keys/{}", t.name, row.id),
                request_id: actor.request_id.as_deref(),
                details: json!({ "name": row.name, "role": row.role, "access_key_id": row.access_key_id }),
            },
        )
        .await
        .store("audit an access key's creation")?;
        tx.commit().await.store("commit an access key's creation")?;
        let info = key_out(row)?;
        Ok(AccessKeyCreated {
            id: info.id,
            name: info.name,
            role: info.role,
            access_key_id: info.access_key_id,
            secret_access_key: secret,
            created_at: info.created_at,
        })
    }

    pub async fn list_access_keys(
        &self,
        actor: &Actor,
        tenant: &str,
    ) -> Result<Vec<AccessKeyInfo>, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Admin).await?;
        persistence::access_keys::list(&self.db.pool, t.id)
            .await
            .store("list access keys")?
            .into_iter()
            .map(key_out)
            .collect()
    }

    /// Revokes a key, named by its id or its access key id.
    pub async fn revoke_access_key(
        &self,
        actor: &Actor,
        tenant: &str,
        key: &str,
    ) -> Result<(), ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Admin).await?;
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        let Some(id) = persistence::access_keys::revoke(&mut tx, t.id, key)
            .await
            .store("revoke an access key")?
        else {
            return Err(ServiceError::not_found("access key", key));
        };
        persistence::audit::insert(
            &mut tx,
            NewAudit {
                tenant_id: Some(t.id),
                actor: &actor.principal.actor(),
                action: "access_key.revoke",
                target: &format!("{}/access-keys/{id}", t.name),
                request_id: actor.request_id.as_deref(),
                details: json!({}),
            },
        )
        .await
        .store("audit an access key's revocation")?;
        tx.commit()
            .await
            .store("commit an access key's revocation")?;
        Ok(())
    }

    /// The live key `access_key_id` names, with its secret; `None` for an unknown or revoked
    /// key. Records its use (at most once a minute).
    pub async fn access_key_holder(
        &self,
        access_key_id: &str,
    ) -> Result<Option<KeyHolder>, ServiceError> {
        let Some(h) = persistence::access_keys::holder(&self.db.pool, access_key_id)
            .await
            .store("look up an access key")?
        else {
            return Ok(None);
        };
        let secret = self
            .master_key
            .open_bytes(&aad(h.id), &h.secret_sealed)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ServiceError::Corrupt {
                action: "open an access key's secret",
                message: "wrong master key or tampered data".to_owned(),
            })?;
        let stale = h
            .last_used_at
            .is_none_or(|t| chrono::Utc::now() - t > super::TOKEN_TOUCH_INTERVAL);
        if stale {
            persistence::access_keys::touch(&self.db.pool, h.id)
                .await
                .store("record an access key's use")?;
        }
        Ok(Some(KeyHolder {
            id: h.id,
            tenant_id: h.tenant_id,
            tenant: h.tenant_name,
            role: Role::parse(&h.role).ok_or_else(|| ServiceError::Corrupt {
                action: "read an access key's role",
                message: h.role.clone(),
            })?,
            secret: secrecy::SecretString::from(secret),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_ids_look_like_awss_with_a_prefix_of_their_own() {
        let a = new_access_key_id();
        let b = new_access_key_id();
        assert_eq!(a.len(), 20);
        assert!(a.starts_with("HGKA"));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_ne!(a, b);
    }
}
