//! Tenants, their tokens and their audit log.

use hangar_tenants::api::{
    AuditEntry, CreateTenant, CreateToken, Role, Tenant, TokenCreated, TokenInfo,
};
use hangar_tenants::{FieldError, FieldErrors, TenantName};
use serde_json::json;
use uuid::Uuid;

use super::{ServiceError, Services, StoreContext};
use crate::auth::{self, Actor};
use crate::persistence::{self, audit::NewAudit, unique_violation};

const MAX_DISPLAY_NAME: usize = 200;
const MAX_TOKEN_NAME: usize = 64;

fn tenant_out(row: persistence::tenants::TenantRow) -> Tenant {
    Tenant {
        id: row.id,
        name: row.name,
        display_name: row.display_name,
        created_at: row.created_at,
    }
}

/// The name of a token or an access key: 1 to 64 printable characters, not only spaces;
/// stored trimmed.
pub(super) fn credential_name(name: &str) -> Result<&str, ServiceError> {
    let refused = name.chars().count() > MAX_TOKEN_NAME || name.chars().any(char::is_control);
    let name = name.trim();
    if name.is_empty() || refused {
        return Err(FieldError::new(
            "name",
            format!("must be 1 to {MAX_TOKEN_NAME} printable characters"),
        )
        .into());
    }
    Ok(name)
}

fn token_out(row: persistence::tokens::TokenRow) -> Result<TokenInfo, ServiceError> {
    Ok(TokenInfo {
        id: row.id,
        role: Role::parse(&row.role).ok_or_else(|| ServiceError::Corrupt {
            action: "read a token's role",
            message: row.role.clone(),
        })?,
        name: row.name,
        prefix: row.prefix,
        created_at: row.created_at,
        last_used_at: row.last_used_at,
        revoked_at: row.revoked_at,
    })
}

impl Services {
    pub async fn create_tenant(
        &self,
        actor: &Actor,
        req: CreateTenant,
    ) -> Result<Tenant, ServiceError> {
        self.require_platform_admin(actor)?;
        let mut errors = FieldErrors::default();
        if let Err(e) = TenantName::parse(req.name.as_str()) {
            errors.push("name", e.to_string());
        }
        if req
            .display_name
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DISPLAY_NAME)
        {
            errors.push(
                "display_name",
                format!("must be at most {MAX_DISPLAY_NAME} characters"),
            );
        }
        errors.into_result(())?;
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        let row = persistence::tenants::insert(
            &mut tx,
            Uuid::new_v4(),
            &req.name,
            req.display_name.as_deref(),
        )
        .await
        .map_err(|e| match unique_violation(&e) {
            Some(_) => ServiceError::Conflict {
                field: Some("name"),
                message: format!("a tenant named {:?} already exists", req.name),
            },
            None => ServiceError::Store {
                action: "create a tenant",
                source: e,
            },
        })?;
        persistence::audit::insert(
            &mut tx,
            NewAudit {
                tenant_id: Some(row.id),
                actor: &actor.principal.actor(),
                action: "tenant.create",
                target: &row.name,
                request_id: actor.request_id.as_deref(),
                details: json!({ "display_name": row.display_name }),
            },
        )
        .await
        .store("audit a tenant's creation")?;
        tx.commit().await.store("commit a tenant's creation")?;
        Ok(tenant_out(row))
    }

    pub async fn get_tenant(&self, actor: &Actor, tenant: &str) -> Result<Tenant, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        let row = persistence::tenants::by_name(&self.db.pool, &t.name)
            .await
            .store("read a tenant")?
            .ok_or_else(|| ServiceError::not_found("tenant", tenant))?;
        Ok(tenant_out(row))
    }

    /// Deletes a tenant that has no environment left (platform admin only), with its tokens,
    /// access keys and audit log; the platform's audit log records the deletion.
    pub async fn delete_tenant(&self, actor: &Actor, tenant: &str) -> Result<(), ServiceError> {
        self.require_platform_admin(actor)?;
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        let row = persistence::tenants::lock_by_name(&mut tx, tenant)
            .await
            .store("read a tenant")?
            .ok_or_else(|| ServiceError::not_found("tenant", tenant))?;
        let live = persistence::tenants::live_environments(&mut tx, row.id)
            .await
            .store("count a tenant's environments")?;
        if live > 0 {
            return Err(ServiceError::Conflict {
                field: None,
                message: format!(
                    "tenant {tenant:?} still has {live} environment(s): delete them first"
                ),
            });
        }
        persistence::tenants::delete(&mut tx, row.id)
            .await
            .store("delete a tenant")?;
        persistence::audit::insert(
            &mut tx,
            NewAudit {
                tenant_id: None,
                actor: &actor.principal.actor(),
                action: "tenant.delete",
                target: &row.name,
                request_id: actor.request_id.as_deref(),
                details: json!({ "id": row.id }),
            },
        )
        .await
        .store("audit a tenant's deletion")?;
        persistence::tokens::notify_gone(&mut tx, &format!("tenant:{}", row.id))
            .await
            .store("announce a tenant's deletion")?;
        tx.commit().await.store("commit a tenant's deletion")?;
        self.principals.evict_tenant(row.id);
        Ok(())
    }

    pub async fn list_tenants(&self, actor: &Actor) -> Result<Vec<Tenant>, ServiceError> {
        self.require_platform_admin(actor)?;
        let rows = persistence::tenants::list(&self.db.pool)
            .await
            .store("list tenants")?;
        Ok(rows.into_iter().map(tenant_out).collect())
    }

    pub async fn create_token(
        &self,
        actor: &Actor,
        tenant: &str,
        req: CreateToken,
    ) -> Result<TokenCreated, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Admin).await?;
        let name = credential_name(&req.name)?;
        let token = auth::generate(auth::TENANT_TOKEN_PREFIX);
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        let row = persistence::tokens::insert(
            &mut tx,
            Uuid::new_v4(),
            t.id,
            name,
            req.role.as_str(),
            &token.hash,
            &token.shown_prefix,
        )
        .await
        .store("create a token")?;
        persistence::audit::insert(
            &mut tx,
            NewAudit {
                tenant_id: Some(t.id),
                actor: &actor.principal.actor(),
                action: "token.create",
                target: &format!("{}/tokens/{}", t.name, row.id),
                request_id: actor.request_id.as_deref(),
                details: json!({ "name": row.name, "role": row.role }),
            },
        )
        .await
        .store("audit a token's creation")?;
        tx.commit().await.store("commit a token's creation")?;
        let info = token_out(row)?;
        Ok(TokenCreated {
            id: info.id,
            name: info.name,
            role: info.role,
            token: token.secret,
            created_at: info.created_at,
        })
    }

    pub async fn list_tokens(
        &self,
        actor: &Actor,
        tenant: &str,
    ) -> Result<Vec<TokenInfo>, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Admin).await?;
        persistence::tokens::list(&self.db.pool, t.id)
            .await
            .store("list tokens")?
            .into_iter()
            .map(token_out)
            .collect()
    }

    pub async fn revoke_token(
        &self,
        actor: &Actor,
        tenant: &str,
        token_id: &str,
    ) -> Result<(), ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Admin).await?;
        let id =
            Uuid::parse_str(token_id).map_err(|_| ServiceError::not_found("token", token_id))?;
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        if !persistence::tokens::revoke(&mut tx, t.id, id)
            .await
            .store("revoke a token")?
        {
            return Err(ServiceError::not_found("token", token_id));
        }
        self.principals.evict_token(id);
        persistence::tokens::notify_gone(&mut tx, &format!("token:{id}"))
            .await
            .store("announce a token's revocation")?;
        persistence::audit::insert(
            &mut tx,
            NewAudit {
                tenant_id: Some(t.id),
                actor: &actor.principal.actor(),
                action: "token.revoke",
                target: &format!("{}/tokens/{id}", t.name),
                request_id: actor.request_id.as_deref(),
                details: json!({}),
            },
        )
        .await
        .store("audit a token's revocation")?;
        tx.commit().await.store("commit a token's revocation")?;
        Ok(())
    }

    pub async fn audit_log(
        &self,
        actor: &Actor,
        tenant: &str,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<AuditEntry>, ServiceError> {
        let limit = limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(FieldError::new("limit", "must be between 1 and 1000").into());
        }
        let t = self.authorize_tenant(actor, tenant, Role::Admin).await?;
        let limit = i64::from(limit);
        let rows = persistence::audit::list(&self.db.pool, t.id, before, limit)
            .await
            .store("read the audit log")?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                actor: r.actor,
                action: r.action,
                target: r.target,
                request_id: r.request_id,
                details: r.details,
                at: r.at,
            })
            .collect())
    }
}
