//! Queries on `audit_log`: one row per mutation, written in the mutation's transaction.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// One audited mutation.
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    pub tenant_id: Option<Uuid>,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub request_id: Option<&'a str>,
    pub details: serde_json::Value,
}

pub async fn insert(conn: &mut PgConnection, entry: NewAudit<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO audit_log (tenant_id, actor, action, target, request_id, details)
         VALUES ($1, $2, $3, $4, $5, $6)",
        entry.tenant_id,
        entry.actor,
        entry.action,
        entry.target,
        entry.request_id,
        entry.details
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The newest entries of a tenant, newest first, older than `before` when given.
pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as!(
        AuditRow,
        "SELECT id, actor, action, target, request_id, details, at FROM audit_log
         WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
        tenant_id,
        before,
        limit
    )
    .fetch_all(pool)
    .await
}

/// The changes of one environment's spec (created, updated, deleted) since `since`, newest
/// first: its revision history.
pub async fn environment_changes(
    pool: &PgPool,
    tenant_id: Uuid,
    target: &str,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as!(
        AuditRow,
        "SELECT id, actor, action, target, request_id, details, at FROM audit_log
         WHERE tenant_id = $1 AND target = $2 AND at >= $3
           AND action IN ('environment.create', 'environment.update', 'environment.delete')
         ORDER BY id DESC LIMIT $4",
        tenant_id,
        target,
        since,
        limit
    )
    .fetch_all(pool)
    .await
}
