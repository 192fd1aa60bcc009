//! Queries on `tokens` (tenant tokens, stored as SHA-256 hashes).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The holder of a live token: its tenant and role.
#[derive(Debug, Clone)]
pub struct TokenHolder {
    pub token_id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_name: String,
    pub role: String,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[allow(clippy::too_many_arguments)]
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    tenant_id: Uuid,
    name: &str,
    role: &str,
    token_hash: &[u8],
    prefix: &str,
) -> Result<TokenRow, sqlx::Error> {
    sqlx::query_as!(
        TokenRow,
        "INSERT INTO tokens (id, tenant_id, name, role, token_hash, prefix)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, name, role, prefix, created_at, last_used_at, revoked_at",
        id,
        tenant_id,
        name,
        role,
        token_hash,
        prefix
    )
    .fetch_one(conn)
    .await
}

pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<TokenRow>, sqlx::Error> {
    sqlx::query_as!(
        TokenRow,
        "SELECT id, name, role, prefix, created_at, last_used_at, revoked_at
         FROM tokens WHERE tenant_id = $1 ORDER BY created_at, id",
        tenant_id
    )
    .fetch_all(pool)
    .await
}

/// Revokes a live token of the tenant; false when there is none with that id.
pub async fn revoke(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE tokens SET revoked_at = now()
         WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        tenant_id,
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn holder(pool: &PgPool, token_hash: &[u8]) -> Result<Option<TokenHolder>, sqlx::Error> {
    sqlx::query_as!(
        TokenHolder,
        "SELECT k.id AS token_id, k.tenant_id, t.name AS tenant_name, k.role, k.last_used_at
         FROM tokens k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.token_hash = $1 AND k.revoked_at IS NULL",
        token_hash
    )
    .fetch_optional(pool)
    .await
}

pub async fn touch(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE tokens SET last_used_at = now() WHERE id = $1", id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Tells every control-plane replica, once the transaction commits, to forget what it cached
/// of `gone` (`token:<id>` revoked, `tenant:<id>` deleted): `crate::changes::forget_principals`.
pub async fn notify_gone(conn: &mut PgConnection, gone: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT pg_notify('hangar_principals', $1)", gone)
        .fetch_one(conn)
        .await?;
    Ok(())
}
