//! Queries on `log_tail`: the last minutes of the environments' component log lines, as their
//! agents sent them.

use chrono::{DateTime, Utc};
use hangar_tenants::api::{LogLevel, LogLine};
use sqlx::PgPool;
use uuid::Uuid;

/// A tail line with its place in the table (followers continue after it).
#[derive(Debug, Clone)]
pub struct TailLine {
    pub id: i64,
    pub line: LogLine,
}

struct Row {
    id: i64,
    component: String,
    file_offset: i64,
    ts: DateTime<Utc>,
    level: String,
    message: String,
}

impl From<Row> for TailLine {
    fn from(r: Row) -> Self {
        TailLine {
            id: r.id,
            line: LogLine {
                ts: r.ts,
                component: r.component,
                level: LogLevel::parse(&r.level).unwrap_or(LogLevel::Info),
                message: r.message,
                offset: u64::try_from(r.file_offset).unwrap_or(0),
            },
        }
    }
}

/// Adds an environment's lines in one statement; lines already there are skipped.
pub async fn insert(
    pool: &PgPool,
    environment_id: Uuid,
    lines: &[LogLine],
) -> Result<u64, sqlx::Error> {
    let mut components = Vec::with_capacity(lines.len());
    let mut offsets = Vec::with_capacity(lines.len());
    let mut ts = Vec::with_capacity(lines.len());
    let mut levels = Vec::with_capacity(lines.len());
    let mut messages = Vec::with_capacity(lines.len());
    for l in lines {
        components.push(l.component.clone());
        offsets.push(i64::try_from(l.offset).unwrap_or(i64::MAX));
        ts.push(l.ts);
        levels.push(l.level.as_str().to_owned());
        // Postgres text cannot hold NUL.
        messages.push(l.message.replace('\0', ""));
    }
    let done = sqlx::query!(
        "INSERT INTO log_tail (environment_id, component, file_offset, ts, level, message)
         SELECT $1, * FROM UNNEST($2::text[], $3::bigint[], $4::timestamptz[], $5::text[], $6::text[])
         ON CONFLICT (environment_id, component, file_offset) DO NOTHING",
        environment_id,
        &components,
        &offsets,
        &ts,
        &levels,
        &messages
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The environments among `ids` that are placed on the cell.
pub async fn placed_on(
    pool: &PgPool,
    cell_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    let rows = sqlx::query_scalar!(
        "SELECT id FROM environments WHERE cell_id = $1 AND id = ANY($2)",
        cell_id,
        ids
    )
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Lines the agents sent more than `minutes` ago are dropped (the bucket has them).
pub async fn prune(pool: &PgPool, minutes: i32) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM log_tail WHERE received_at < now() - make_interval(mins => $1)",
        minutes
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The environment's lines after `after_id`, in the order they arrived, at most `limit`.
pub async fn after(
    pool: &PgPool,
    environment_id: Uuid,
    after_id: i64,
    limit: i64,
) -> Result<Vec<TailLine>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Row,
        "SELECT id, component, file_offset, ts, level, message FROM log_tail
         WHERE environment_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        environment_id,
        after_id,
        limit
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(TailLine::from).collect())
}

/// The environment's lines with a time in `[since, until]`.
pub async fn between(
    pool: &PgPool,
    environment_id: Uuid,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<TailLine>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Row,
        "SELECT id, component, file_offset, ts, level, message FROM log_tail
         WHERE environment_id = $1 AND ts BETWEEN $2 AND $3 ORDER BY id",
        environment_id,
        since,
        until
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(TailLine::from).collect())
}

/// The newest line id of the environment (0 when it has none): a follower starts after it.
pub async fn last_id(pool: &PgPool, environment_id: Uuid) -> Result<i64, sqlx::Error> {
    let id = sqlx::query_scalar!(
        "SELECT COALESCE(max(id), 0) AS \"id!\" FROM log_tail WHERE environment_id = $1",
        environment_id
    )
    .fetch_one(pool)
    .await?;
    Ok(id)
}
