//! Queries on `environments` and `idempotency_keys`.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// An environment with its tenant's and cell's names.
#[derive(Debug, Clone)]
pub struct EnvRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant: String,
    pub name: String,
    pub spec: serde_json::Value,
    pub revision: i64,
    pub phase: String,
    pub status_message: Option<String>,
    pub delete_requested: bool,
    pub cell_id: Option<Uuid>,
    pub cell: Option<String>,
    /// Seconds since the cell's agent was last heard from (by the database's clock).
    pub cell_silent_secs: Option<f64>,
    /// The cell's isolation report (`CellIsolation`), if its agent sent one.
    pub cell_isolation: Option<serde_json::Value>,
    pub observed: Option<serde_json::Value>,
    /// Asked to hibernate (until woken).
    pub hibernate: bool,
    /// Last used through Hangar (its Airflow API or UI, its CLI).
    pub last_used_at: Option<DateTime<Utc>>,
    /// The path its Airflow is served under when not `webserver_path` of its tenant and name
    /// (a claimed warm environment's).
    pub airflow_path: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct AssignmentRow {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub revision: i64,
    pub delete_requested: bool,
    pub spec: serde_json::Value,
    pub secrets: Option<Vec<u8>>,
    pub hibernate: bool,
    pub warm: bool,
    pub airflow_path: Option<String>,
    pub change_seq: i64,
}

#[allow(clippy::too_many_arguments)]
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    tenant_id: Uuid,
    name: &str,
    spec: &serde_json::Value,
    phase: &str,
    status_message: &str,
    sealed_secrets: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO environments (id, tenant_id, name, spec, phase, status_message, secrets)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        id,
        tenant_id,
        name,
        spec,
        phase,
        status_message,
        sealed_secrets
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The live environment of that name, or else the most recently deleted one.
pub async fn by_name(
    pool: &PgPool,
    tenant_id: Uuid,
    name: &str,
) -> Result<Option<EnvRow>, sqlx::Error> {
    sqlx::query_as!(
        EnvRow,
        r#"SELECT e.id, e.tenant_id, t.name AS tenant, e.name, e.spec, e.revision, e.phase,
                  e.status_message, e.delete_requested, e.cell_id, c.name AS "cell?",
                  extract(epoch FROM now() - c.last_seen_at)::float8 AS "cell_silent_secs?",
                  c.isolation AS "cell_isolation?", e.observed, e.hibernate, e.last_used_at, e.airflow_path, e.created_at,
                  e.updated_at
           FROM environments e JOIN tenants t ON t.id = e.tenant_id
           LEFT JOIN cells c ON c.id = e.cell_id
           WHERE e.tenant_id = $1 AND e.name = $2
           ORDER BY (e.phase = 'DELETED'), e.created_at DESC LIMIT 1"#,
        tenant_id,
        name
    )
    .fetch_optional(pool)
    .await
}

pub async fn by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<EnvRow>, sqlx::Error> {
    sqlx::query_as!(
        EnvRow,
        r#"SELECT e.id, e.tenant_id, t.name AS tenant, e.name, e.spec, e.revision, e.phase,
                  e.status_message, e.delete_requested, e.cell_id, c.name AS "cell?",
                  extract(epoch FROM now() - c.last_seen_at)::float8 AS "cell_silent_secs?",
                  c.isolation AS "cell_isolation?", e.observed, e.hibernate, e.last_used_at, e.airflow_path, e.created_at,
                  e.updated_at
           FROM environments e JOIN tenants t ON t.id = e.tenant_id
           LEFT JOIN cells c ON c.id = e.cell_id
           WHERE e.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// The tenant's environments that are not deleted, by name.
pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<EnvRow>, sqlx::Error> {
    sqlx::query_as!(
        EnvRow,
        r#"SELECT e.id, e.tenant_id, t.name AS tenant, e.name, e.spec, e.revision, e.phase,
                  e.status_message, e.delete_requested, e.cell_id, c.name AS "cell?",
                  extract(epoch FROM now() - c.last_seen_at)::float8 AS "cell_silent_secs?",
                  c.isolation AS "cell_isolation?", e.observed, e.hibernate, e.last_used_at, e.airflow_path, e.created_at,
                  e.updated_at
           FROM environments e JOIN tenants t ON t.id = e.tenant_id
           LEFT JOIN cells c ON c.id = e.cell_id
           WHERE e.tenant_id = $1 AND e.phase <> 'DELETED'
           ORDER BY e.name"#,
        tenant_id
    )
    .fetch_all(pool)
    .await
}

/// One page of the tenant's environments whose name contains `name_part` (any case), by name.
pub async fn list_page(
    pool: &PgPool,
    tenant_id: Uuid,
    name_part: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<EnvRow>, sqlx::Error> {
    sqlx::query_as!(
        EnvRow,
        r#"SELECT e.id, e.tenant_id, t.name AS tenant, e.name, e.spec, e.revision, e.phase,
                  e.status_message, e.delete_requested, e.cell_id, c.name AS "cell?",
                  extract(epoch FROM now() - c.last_seen_at)::float8 AS "cell_silent_secs?",
                  c.isolation AS "cell_isolation?", e.observed, e.hibernate, e.last_used_at, e.airflow_path, e.created_at,
                  e.updated_at
           FROM environments e JOIN tenants t ON t.id = e.tenant_id
           LEFT JOIN cells c ON c.id = e.cell_id
           WHERE e.tenant_id = $1 AND e.phase <> 'DELETED'
             AND strpos(lower(e.name), lower($2)) > 0
           ORDER BY e.name LIMIT $3 OFFSET $4"#,
        tenant_id,
        name_part,
        limit,
        offset
    )
    .fetch_all(pool)
    .await
}

/// How many of the tenant's environments have a name that contains `name_part` (any case).
pub async fn count_matching(
    pool: &PgPool,
    tenant_id: Uuid,
    name_part: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM environments
           WHERE tenant_id = $1 AND phase <> 'DELETED' AND strpos(lower(name), lower($2)) > 0"#,
        tenant_id,
        name_part
    )
    .fetch_one(pool)
    .await
}

/// Locks the environment's row; returns its cell, phase, revision and deletion intent.
pub struct LockedEnv {
    pub tenant_id: Uuid,
    pub cell_id: Option<Uuid>,
    pub phase: String,
    pub revision: i64,
    pub delete_requested: bool,
    pub hibernate: bool,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<LockedEnv>, sqlx::Error> {
    sqlx::query_as!(
        LockedEnv,
        "SELECT tenant_id, cell_id, phase, revision, delete_requested, hibernate, last_used_at
         FROM environments WHERE id = $1 FOR UPDATE",
        id
    )
    .fetch_optional(conn)
    .await
}

/// Stores a new spec as the next revision, only if the current revision is `expected`.
/// Returns the new revision, or `None` when another change got there first.
pub async fn update_spec(
    conn: &mut PgConnection,
    id: Uuid,
    expected_revision: i64,
    spec: &serde_json::Value,
    phase: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query!(
        "UPDATE environments
         SET spec = $3, revision = revision + 1, phase = $4, status_message = NULL,
             change_seq = nextval('environment_changes'), updated_at = now()
         WHERE id = $1 AND revision = $2
         RETURNING revision",
        id,
        expected_revision,
        spec,
        phase
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.revision))
}

/// Asks the environment's cell to hibernate it (`true`) or to wake it (`false`), in `phase`
/// with `status_message`.
pub async fn set_hibernate(
    conn: &mut PgConnection,
    id: Uuid,
    hibernate: bool,
    phase: &str,
    status_message: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE environments
         SET hibernate = $2, phase = $3, status_message = $4,
             change_seq = nextval('environment_changes'), updated_at = now()
         WHERE id = $1",
        id,
        hibernate,
        phase,
        status_message
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a use of the environment through Hangar (not a change: its cell is not told).
pub async fn record_use(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE environments SET last_used_at = now() WHERE id = $1",
        id
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Records the intent to delete: the cell's agent tears down and reports; an environment on no
/// cell has nothing running and is deleted at once.
pub async fn request_delete(
    conn: &mut PgConnection,
    id: Uuid,
    phase: &str,
    status_message: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE environments
         SET delete_requested = true, revision = revision + 1, phase = $2, status_message = $3,
             change_seq = nextval('environment_changes'), updated_at = now(),
             deleted_at = CASE WHEN $2 = 'DELETED' THEN now() END
         WHERE id = $1",
        id,
        phase,
        status_message
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn place(conn: &mut PgConnection, id: Uuid, cell_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE environments
         SET cell_id = $2, status_message = NULL, change_seq = nextval('environment_changes'),
             updated_at = now()
         WHERE id = $1",
        id,
        cell_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Environments waiting for a cell, oldest first.
pub async fn unplaced(conn: &mut PgConnection, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT id FROM environments
         WHERE cell_id IS NULL AND phase <> 'DELETED' AND NOT delete_requested
         ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

pub async fn record_observed(
    conn: &mut PgConnection,
    id: Uuid,
    observed: &serde_json::Value,
    phase: &str,
    status_message: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE environments
         SET observed = $2, observed_at = now(), phase = $3, status_message = $4,
             updated_at = CASE WHEN phase <> $3 THEN now() ELSE updated_at END,
             deleted_at = CASE WHEN $3 = 'DELETED' THEN now() ELSE deleted_at END
         WHERE id = $1",
        id,
        observed,
        phase,
        status_message
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Environments on the cell whose desired state changed after `since`, in change order.
pub async fn assignments(
    pool: &PgPool,
    cell_id: Uuid,
    since: i64,
    limit: i64,
) -> Result<Vec<AssignmentRow>, sqlx::Error> {
    sqlx::query_as!(
        AssignmentRow,
        "SELECT e.id, t.name AS tenant, e.name, e.revision, e.delete_requested, e.spec, e.secrets,
                e.hibernate, e.warm, e.airflow_path, e.change_seq
         FROM environments e JOIN tenants t ON t.id = e.tenant_id
         WHERE e.cell_id = $1 AND e.change_seq > $2 AND e.phase <> 'DELETED'
         ORDER BY e.change_seq LIMIT $3",
        cell_id,
        since,
        limit
    )
    .fetch_all(pool)
    .await
}

/// How many environments of one cell (or of none) are in one phase.
#[derive(Debug, Clone)]
pub struct PhaseCount {
    pub phase: String,
    pub cell: Option<String>,
    /// Seconds since the cell's agent was last heard from (by the database's clock).
    pub cell_silent_secs: Option<f64>,
    pub n: i64,
}

/// Environments by phase and cell.
pub async fn count_by_phase(pool: &PgPool) -> Result<Vec<PhaseCount>, sqlx::Error> {
    sqlx::query_as!(
        PhaseCount,
        r#"SELECT e.phase, c.name AS "cell?",
                  extract(epoch FROM now() - c.last_seen_at)::float8 AS "cell_silent_secs?",
                  count(*) AS "n!"
           FROM environments e LEFT JOIN cells c ON c.id = e.cell_id
           GROUP BY e.phase, c.id ORDER BY e.phase, c.name"#
    )
    .fetch_all(pool)
    .await
}

/// One live environment and what its agent last reported (`observed`).
#[derive(Debug, Clone)]
pub struct ObservedRow {
    pub tenant: String,
    pub name: String,
    pub cell: Option<String>,
    /// Seconds since the cell's agent was last heard from (by the database's clock).
    pub cell_silent_secs: Option<f64>,
    pub observed: serde_json::Value,
}

/// Every live environment's last report, for the metrics (without the parts the
/// metrics never read and that can be long: the requirements text, the DAG sync's refusals).
pub async fn observed_states(pool: &PgPool) -> Result<Vec<ObservedRow>, sqlx::Error> {
    sqlx::query_as!(
        ObservedRow,
        r#"SELECT t.name AS tenant, e.name, c.name AS "cell?",
                  extract(epoch FROM now() - c.last_seen_at)::float8 AS "cell_silent_secs?",
                  coalesce(e.observed, '{}'::jsonb) - 'bucket_requirements' - 'dag_sync' AS "observed!"
           FROM environments e
           JOIN tenants t ON t.id = e.tenant_id
           LEFT JOIN cells c ON c.id = e.cell_id
           WHERE e.phase <> 'DELETED'
           ORDER BY t.name, e.name"#
    )
    .fetch_all(pool)
    .await
}

/// Serialises requests that carry the same idempotency key until the transaction ends.
pub async fn lock_idempotency_key(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    key: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2::text, 0))",
        tenant_id.to_string(),
        key
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

pub struct IdempotencyRow {
    pub request_hash: Vec<u8>,
    pub environment_id: Uuid,
}

pub async fn find_idempotency_key(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    key: &str,
) -> Result<Option<IdempotencyRow>, sqlx::Error> {
    sqlx::query_as!(
        IdempotencyRow,
        "SELECT request_hash, environment_id FROM idempotency_keys
         WHERE tenant_id = $1 AND key = $2 AND created_at > now() - interval '24 hours'",
        tenant_id,
        key
    )
    .fetch_optional(conn)
    .await
}

pub async fn save_idempotency_key(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    key: &str,
    request_hash: &[u8],
    environment_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, environment_id)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, key) DO UPDATE
         SET request_hash = EXCLUDED.request_hash, environment_id = EXCLUDED.environment_id,
             created_at = now()",
        tenant_id,
        key,
        request_hash,
        environment_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The sealed secrets of an environment.
pub async fn sealed_secrets(pool: &PgPool, id: Uuid) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let row = sqlx::query!("SELECT secrets FROM environments WHERE id = $1", id)
        .fetch_optional(pool)
        .await?;
    Ok(row.and_then(|r| r.secrets))
}

/// A prepared environment on a live cell, locked for the rest of the transaction.
#[derive(Debug, Clone)]
pub struct WarmRow {
    pub id: Uuid,
    pub cell_id: Uuid,
    pub spec: serde_json::Value,
}

/// Up to `limit` prepared environments that are up (`AVAILABLE`) on the given cells, oldest
/// first, locked; those another transaction holds are skipped.
pub async fn lock_available_warm(
    conn: &mut PgConnection,
    cells: &[Uuid],
    limit: i64,
) -> Result<Vec<WarmRow>, sqlx::Error> {
    sqlx::query_as!(
        WarmRow,
        r#"SELECT id, cell_id AS "cell_id!", spec FROM environments
           WHERE warm AND phase = 'AVAILABLE' AND NOT delete_requested AND NOT hibernate
             AND cell_id = ANY($1)
           ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED"#,
        cells,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Hands a prepared environment to a tenant: its new owner, name and spec as the next
/// revision, `CREATING` until its agent reports that revision up. Fails with a unique violation
/// when the tenant has a live environment of that name.
pub async fn claim_warm(
    conn: &mut PgConnection,
    id: Uuid,
    tenant_id: Uuid,
    name: &str,
    spec: &serde_json::Value,
    phase: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE environments
         SET tenant_id = $2, name = $3, spec = $4, revision = revision + 1, warm = false,
             phase = $5, status_message = NULL, created_at = now(), updated_at = now(),
             last_used_at = NULL, change_seq = nextval('environment_changes')
         WHERE id = $1 AND warm",
        id,
        tenant_id,
        name,
        spec,
        phase
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds a prepared environment to a cell, under the reserved tenant `tenant_id`.
#[allow(clippy::too_many_arguments)]
pub async fn insert_warm(
    conn: &mut PgConnection,
    id: Uuid,
    tenant_id: Uuid,
    name: &str,
    spec: &serde_json::Value,
    phase: &str,
    sealed_secrets: &[u8],
    cell_id: Uuid,
    airflow_path: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO environments (id, tenant_id, name, spec, phase, secrets, cell_id, warm,
                                   airflow_path)
         VALUES ($1, $2, $3, $4, $5, $6, $7, true, $8)",
        id,
        tenant_id,
        name,
        spec,
        phase,
        sealed_secrets,
        cell_id,
        airflow_path
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The cell's prepared environments that are not deleted nor being deleted, newest first.
pub async fn live_warm(conn: &mut PgConnection, cell_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT id FROM environments
         WHERE warm AND cell_id = $1 AND phase <> 'DELETED' AND NOT delete_requested
         ORDER BY created_at DESC, id",
        cell_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}
