//! Queries on `pool_samples` and `tenant_worker_samples`: the shared pools' use, sampled once
//! a minute, and what the platform page charts from it.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Takes the sample of minute `at` (cells' slots and held workers, tenants' workers, from the
/// environments' newest reports) unless one was taken, and forgets samples older than
/// `keep_since`. Returns the rows written.
pub async fn sample(
    pool: &PgPool,
    at: DateTime<Utc>,
    keep_since: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let cells = sqlx::query!(
        r#"INSERT INTO pool_samples (at, cell_id, worker_slots, workers)
           SELECT $1, c.id, coalesce(c.worker_slots, 0),
                  (SELECT coalesce(sum(coalesce((e.observed -> 'workers' ->> 'actual')::int, 0)
                                     + coalesce((e.observed -> 'workers' ->> 'draining')::int, 0)), 0)
                   FROM environments e WHERE e.cell_id = c.id AND e.phase <> 'DELETED')::int
           FROM cells c
           ON CONFLICT DO NOTHING"#,
        at
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let tenants = sqlx::query!(
        r#"INSERT INTO tenant_worker_samples (at, tenant_id, workers)
           SELECT $1, t.id,
                  (SELECT coalesce(sum(coalesce((e.observed -> 'workers' ->> 'actual')::int, 0)
                                     + coalesce((e.observed -> 'workers' ->> 'draining')::int, 0)), 0)
                   FROM environments e WHERE e.tenant_id = t.id AND e.phase <> 'DELETED')::int
           FROM tenants t WHERE t.name NOT LIKE '.%'
           ON CONFLICT DO NOTHING"#,
        at
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query!("DELETE FROM pool_samples WHERE at < $1", keep_since)
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "DELETE FROM tenant_worker_samples WHERE at < $1",
        keep_since
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(cells + tenants)
}

/// One cell's pool at one minute.
#[derive(Debug, Clone)]
pub struct PoolSample {
    pub cell: String,
    pub at: DateTime<Utc>,
    pub worker_slots: i32,
    pub workers: i32,
}

/// Every cell's samples since `since`, by cell and time.
pub async fn pool_samples(
    pool: &PgPool,
    since: DateTime<Utc>,
) -> Result<Vec<PoolSample>, sqlx::Error> {
    sqlx::query_as!(
        PoolSample,
        "SELECT c.name AS cell, s.at, s.worker_slots, s.workers
         FROM pool_samples s JOIN cells c ON c.id = s.cell_id
         WHERE s.at >= $1 ORDER BY c.name, s.at",
        since
    )
    .fetch_all(pool)
    .await
}

/// A tenant's worker-minutes since a time (the sum of its per-minute worker counts).
#[derive(Debug, Clone)]
pub struct TenantWorkerMinutes {
    pub tenant: String,
    pub worker_minutes: i64,
}

pub async fn tenant_worker_minutes(
    pool: &PgPool,
    since: DateTime<Utc>,
) -> Result<Vec<TenantWorkerMinutes>, sqlx::Error> {
    sqlx::query_as!(
        TenantWorkerMinutes,
        r#"SELECT t.name AS tenant, coalesce(sum(s.workers), 0)::bigint AS "worker_minutes!"
           FROM tenants t LEFT JOIN tenant_worker_samples s ON s.tenant_id = t.id AND s.at >= $1
           WHERE t.name NOT LIKE '.%'
           GROUP BY t.name ORDER BY 2 DESC, t.name"#,
        since
    )
    .fetch_all(pool)
    .await
}
