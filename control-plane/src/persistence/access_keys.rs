//! Queries on `access_keys` (a tenant's AWS-style keys for the MWAA-compatible API; the
//! secret sealed with the master key).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct AccessKeyRow {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub access_key_id: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A live key with its tenant and its sealed secret, to check a signature.
#[derive(Debug, Clone)]
pub struct KeyHolder {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_name: String,
    pub role: String,
    pub secret_sealed: Vec<u8>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub struct NewAccessKey<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: &'a str,
    pub role: &'a str,
    pub access_key_id: &'a str,
    pub secret_sealed: &'a [u8],
}

pub async fn insert(
    conn: &mut PgConnection,
    k: NewAccessKey<'_>,
) -> Result<AccessKeyRow, sqlx::Error> {
    sqlx::query_as!(
        AccessKeyRow,
        "INSERT INTO access_keys (id, tenant_id, name, role, access_key_id, secret_sealed)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, name, role, access_key_id, created_at, last_used_at, revoked_at",
        k.id,
        k.tenant_id,
        k.name,
        k.role,
        k.access_key_id,
        k.secret_sealed
    )
    .fetch_one(conn)
    .await
}

pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<AccessKeyRow>, sqlx::Error> {
    sqlx::query_as!(
        AccessKeyRow,
        "SELECT id, name, role, access_key_id, created_at, last_used_at, revoked_at
         FROM access_keys WHERE tenant_id = $1 ORDER BY created_at, id",
        tenant_id
    )
    .fetch_all(pool)
    .await
}

/// Revokes a live key of the tenant, by its id or its access key id; false when there is none.
pub async fn revoke(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    key: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    let id = Uuid::parse_str(key).ok();
    let row = sqlx::query_scalar!(
        "UPDATE access_keys SET revoked_at = now()
         WHERE tenant_id = $1 AND (id = $2 OR access_key_id = $3) AND revoked_at IS NULL
         RETURNING id",
        tenant_id,
        id,
        key
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

pub async fn holder(pool: &PgPool, access_key_id: &str) -> Result<Option<KeyHolder>, sqlx::Error> {
    sqlx::query_as!(
        KeyHolder,
        "SELECT k.id, k.tenant_id, t.name AS tenant_name, k.role, k.secret_sealed, k.last_used_at
         FROM access_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.access_key_id = $1 AND k.revoked_at IS NULL",
        access_key_id
    )
    .fetch_optional(pool)
    .await
}

pub async fn touch(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE access_keys SET last_used_at = now() WHERE id = $1",
        id
    )
    .execute(pool)
    .await?;
    Ok(())
}
