//! Queries on `tenants`.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TenantRow {
    pub id: Uuid,
    pub name: String,
    pub display_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    name: &str,
    display_name: Option<&str>,
) -> Result<TenantRow, sqlx::Error> {
    sqlx::query_as!(
        TenantRow,
        "INSERT INTO tenants (id, name, display_name) VALUES ($1, $2, $3)
         RETURNING id, name, display_name, created_at",
        id,
        name,
        display_name
    )
    .fetch_one(conn)
    .await
}

pub async fn by_name(pool: &PgPool, name: &str) -> Result<Option<TenantRow>, sqlx::Error> {
    sqlx::query_as!(
        TenantRow,
        "SELECT id, name, display_name, created_at FROM tenants WHERE name = $1",
        name
    )
    .fetch_optional(pool)
    .await
}

pub async fn list(pool: &PgPool) -> Result<Vec<TenantRow>, sqlx::Error> {
    sqlx::query_as!(
        TenantRow,
        "SELECT id, name, display_name, created_at FROM tenants WHERE name NOT LIKE '.%' ORDER BY name"
    )
    .fetch_all(pool)
    .await
}

/// The tenant, locked until the transaction ends (an environment or token being created for
/// it waits, as its row references this one).
pub async fn lock_by_name(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<TenantRow>, sqlx::Error> {
    sqlx::query_as!(
        TenantRow,
        "SELECT id, name, display_name, created_at FROM tenants WHERE name = $1 FOR UPDATE",
        name
    )
    .fetch_optional(conn)
    .await
}

/// How many of the tenant's environments are not `DELETED`.
pub async fn live_environments(conn: &mut PgConnection, id: Uuid) -> Result<i64, sqlx::Error> {
    let n = sqlx::query_scalar!(
        "SELECT count(*) FROM environments WHERE tenant_id = $1 AND phase <> 'DELETED'",
        id
    )
    .fetch_one(conn)
    .await?;
    Ok(n.unwrap_or(0))
}

/// Removes the tenant with everything that is its own (tokens, access keys, the records of
/// its deleted environments, its audit log), by the schema's cascades.
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM tenants WHERE id = $1", id)
        .execute(conn)
        .await?;
    Ok(())
}
