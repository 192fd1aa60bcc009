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
        "SELECT id, name, display_name, created_at FROM tenants ORDER BY name"
    )
    .fetch_all(pool)
    .await
}
