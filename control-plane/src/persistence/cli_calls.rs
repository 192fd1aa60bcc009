//! Queries on `cli_calls`: Airflow CLI commands waiting for, run by and answered by the agent of
//! the environment's cell.

use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct ClaimedCall {
    pub id: Uuid,
    pub environment_id: Uuid,
    pub args: serde_json::Value,
    pub timeout_secs: i32,
}

pub async fn insert(
    pool: &PgPool,
    id: Uuid,
    environment_id: Uuid,
    cell_id: Uuid,
    args: &serde_json::Value,
    timeout_secs: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO cli_calls (id, environment_id, cell_id, args, timeout_secs)
         VALUES ($1, $2, $3, $4, $5)",
        id,
        environment_id,
        cell_id,
        args,
        timeout_secs
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Hands the cell's pending calls to its agent (each once, even to concurrent agents); calls
/// older than a minute are left: their callers have given up.
pub async fn claim(pool: &PgPool, cell_id: Uuid) -> Result<Vec<ClaimedCall>, sqlx::Error> {
    sqlx::query_as!(
        ClaimedCall,
        "UPDATE cli_calls SET state = 'running', claimed_at = now()
         WHERE id IN (SELECT id FROM cli_calls
                      WHERE cell_id = $1 AND state = 'pending'
                        AND created_at > now() - interval '1 minute'
                      ORDER BY created_at LIMIT 16 FOR UPDATE SKIP LOCKED)
         RETURNING id, environment_id, args, timeout_secs",
        cell_id
    )
    .fetch_all(pool)
    .await
}

/// Records the result of a call the cell claimed; false when there is no such running call.
pub async fn finish(
    pool: &PgPool,
    id: Uuid,
    cell_id: Uuid,
    result: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE cli_calls SET state = 'done', result = $3, finished_at = now()
         WHERE id = $1 AND cell_id = $2 AND state = 'running'",
        id,
        cell_id,
        result
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The result of a call, once it is done.
pub async fn result(pool: &PgPool, id: Uuid) -> Result<Option<serde_json::Value>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT result FROM cli_calls WHERE id = $1 AND state = 'done'",
        id
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|r| r.result))
}

/// Removes calls (and their output) older than `days`; how many went.
pub async fn prune(pool: &PgPool, days: i32) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM cli_calls WHERE created_at < now() - make_interval(days => $1)",
        days
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
