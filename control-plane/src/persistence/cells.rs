//! Queries on `cells`: data-plane agents, their capacity, liveness and the placement of
//! environments on them.
//!
//! Ordering guarantee the agents rely on: every change to an environment placed on a cell is made
//! while holding that cell's row lock ([`lock`]), so the `change_seq` numbers of one cell's
//! environments commit in increasing order and "changed since N" never skips a change.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct CellRow {
    pub id: Uuid,
    pub name: String,
    pub runtime: String,
    pub max_environments: Option<i32>,
    pub worker_slots: Option<i32>,
    pub agent_version: Option<String>,
    pub environments: i64,
    /// Worker slots its environments' workers hold (taking tasks or draining), as reported.
    pub workers: i64,
    pub registered_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The agent's isolation report (`CellIsolation`), if it sent one.
    pub isolation: Option<serde_json::Value>,
    /// Prepared environments its agent asked to keep.
    pub warm_pool: i32,
    /// Of those, how many are up.
    pub warm_ready: i64,
    /// Panics of its agent's loops since the agent started, as it last registered.
    pub agent_panics: i64,
}

#[derive(Debug, Clone)]
pub struct CellIdentity {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct CellRoom {
    pub id: Uuid,
    pub max_environments: i32,
    pub placed: i64,
    /// Prepared environments its agent asked to keep.
    pub warm_pool: i32,
}

pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    name: &str,
    runtime: &str,
    token_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO cells (id, name, runtime, token_hash) VALUES ($1, $2, $3, $4)",
        id,
        name,
        runtime,
        token_hash
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A cell's runtime and token hash, locked until the transaction ends.
pub async fn lock_token(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT runtime, token_hash FROM cells WHERE name = $1 FOR UPDATE",
        name
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.runtime, r.token_hash)))
}

/// Replaces a cell's token (by its hash).
pub async fn set_token_hash(
    conn: &mut PgConnection,
    name: &str,
    token_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE cells SET token_hash = $2 WHERE name = $1",
        name,
        token_hash
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn by_name(pool: &PgPool, name: &str) -> Result<Option<CellRow>, sqlx::Error> {
    sqlx::query_as!(
        CellRow,
        r#"SELECT c.id, c.name, c.runtime, c.max_environments, c.worker_slots, c.agent_version,
                  (SELECT count(*) FROM environments e
                   WHERE e.cell_id = c.id AND e.phase <> 'DELETED') AS "environments!",
                  (SELECT coalesce(sum(coalesce((e.observed -> 'workers' ->> 'actual')::bigint, 0)
                                     + coalesce((e.observed -> 'workers' ->> 'draining')::bigint, 0)), 0)
                   FROM environments e
                   WHERE e.cell_id = c.id AND e.phase <> 'DELETED')::bigint AS "workers!",
                  c.registered_at, c.last_seen_at, c.created_at, c.isolation, c.warm_pool, c.agent_panics,
                  (SELECT count(*) FROM environments e
                   WHERE e.cell_id = c.id AND e.warm AND e.phase = 'AVAILABLE'
                     AND NOT e.delete_requested) AS "warm_ready!"
           FROM cells c WHERE c.name = $1"#,
        name
    )
    .fetch_optional(pool)
    .await
}

pub async fn list(pool: &PgPool) -> Result<Vec<CellRow>, sqlx::Error> {
    sqlx::query_as!(
        CellRow,
        r#"SELECT c.id, c.name, c.runtime, c.max_environments, c.worker_slots, c.agent_version,
                  (SELECT count(*) FROM environments e
                   WHERE e.cell_id = c.id AND e.phase <> 'DELETED') AS "environments!",
                  (SELECT coalesce(sum(coalesce((e.observed -> 'workers' ->> 'actual')::bigint, 0)
                                     + coalesce((e.observed -> 'workers' ->> 'draining')::bigint, 0)), 0)
                   FROM environments e
                   WHERE e.cell_id = c.id AND e.phase <> 'DELETED')::bigint AS "workers!",
                  c.registered_at, c.last_seen_at, c.created_at, c.isolation, c.warm_pool, c.agent_panics,
                  (SELECT count(*) FROM environments e
                   WHERE e.cell_id = c.id AND e.warm AND e.phase = 'AVAILABLE'
                     AND NOT e.delete_requested) AS "warm_ready!"
           FROM cells c ORDER BY c.name"#
    )
    .fetch_all(pool)
    .await
}

pub async fn by_token(
    pool: &PgPool,
    token_hash: &[u8],
) -> Result<Option<CellIdentity>, sqlx::Error> {
    sqlx::query_as!(
        CellIdentity,
        "SELECT id, name FROM cells WHERE token_hash = $1",
        token_hash
    )
    .fetch_optional(pool)
    .await
}

/// Records an agent's registration: its capacity, version and isolation report (replacing the
/// previous one: the newest registration is what the cell is now).
/// What an agent reports when it registers.
#[derive(Debug, Clone, Copy)]
pub struct Registration<'a> {
    pub max_environments: i32,
    pub worker_slots: i32,
    pub agent_version: &'a str,
    pub isolation: Option<&'a serde_json::Value>,
    pub warm_pool: i32,
    pub agent_panics: i64,
}

pub async fn register(
    conn: &mut PgConnection,
    id: Uuid,
    r: Registration<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE cells SET max_environments = $2, worker_slots = $3, agent_version = $4,
                isolation = $5, warm_pool = $6, agent_panics = $7,
                registered_at = COALESCE(registered_at, now()), last_seen_at = now()
         WHERE id = $1",
        id,
        r.max_environments,
        r.worker_slots,
        r.agent_version,
        r.isolation,
        r.warm_pool,
        r.agent_panics
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that the cell's agent was heard from (a poll or a report).
pub async fn touch(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE cells SET last_seen_at = now() WHERE id = $1", id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Locks one cell's row for the rest of the transaction (see the module header).
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT id FROM cells WHERE id = $1 FOR UPDATE", id)
        .fetch_optional(conn)
        .await?;
    Ok(())
}

/// Locks every registered cell seen within `ttl_secs` and returns how full each is. Locking them
/// all, in id order, makes concurrent placements count each other's environments.
pub async fn lock_live_with_room(
    conn: &mut PgConnection,
    ttl_secs: f64,
) -> Result<Vec<CellRoom>, sqlx::Error> {
    sqlx::query!(
        "SELECT id FROM cells
         WHERE registered_at IS NOT NULL AND last_seen_at > now() - make_interval(secs => $1)
         ORDER BY id FOR UPDATE",
        ttl_secs
    )
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query_as!(
        CellRoom,
        r#"SELECT c.id, c.max_environments AS "max_environments!",
                  (SELECT count(*) FROM environments e
                   WHERE e.cell_id = c.id AND e.phase <> 'DELETED') AS "placed!",
                  c.warm_pool
           FROM cells c
           WHERE c.registered_at IS NOT NULL AND c.max_environments IS NOT NULL
             AND c.last_seen_at > now() - make_interval(secs => $1)
           ORDER BY c.id"#,
        ttl_secs
    )
    .fetch_all(conn)
    .await
}

/// Wakes the agents long-polling this cell once the transaction commits.
pub async fn notify_changed(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_notify('hangar_cell_changes', $1)",
        id.to_string()
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// The runtime (`process`, `kubernetes`) of the cell `id`.
pub async fn runtime_of(conn: &mut PgConnection, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query!("SELECT runtime FROM cells WHERE id = $1", id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.runtime))
}
