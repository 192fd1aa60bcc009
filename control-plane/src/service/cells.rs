//! Data-plane cells: their creation by the platform admin, agent registration, placement of
//! environments, the long-polled assignments and the observed state agents report.

use std::time::Duration;

use hangar_tenants::api::{
    Assignment, Cell, CellCapacity, CellCreated, CellIsolation, CellPool, CreateCell, Environment,
    RegisterCell, Runtime, UpdateEnvironment,
};
use hangar_tenants::{derive_phase, CellContact, CellName, FieldErrors, ObservedState, Phase};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ServiceError, Services, StoreContext, TenantRef};
use crate::auth::{self, Actor, Principal};
use crate::persistence::{self, audit::NewAudit, unique_violation};

/// At most this many assignments go out in one answer; the agent asks again from the cursor.
const ASSIGNMENT_PAGE: i64 = 500;
/// The longest a long poll may wait.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

fn runtime_str(r: Runtime) -> &'static str {
    match r {
        Runtime::Process => "process",
        Runtime::Kubernetes => "kubernetes",
    }
}

/// A cell as the API shows it; `tunnel_connected`: whether its agent's tunnel is up (to any
/// replica).
fn cell_out(
    row: persistence::cells::CellRow,
    tunnel_connected: bool,
) -> Result<Cell, ServiceError> {
    let runtime = match row.runtime.as_str() {
        "process" => Runtime::Process,
        "kubernetes" => Runtime::Kubernetes,
        other => {
            return Err(ServiceError::Corrupt {
                action: "read a cell's runtime",
                message: other.to_owned(),
            })
        }
    };
    let capacity = match (row.max_environments, row.worker_slots) {
        (Some(e), Some(w)) => Some(CellCapacity {
            max_environments: u32::try_from(e).unwrap_or(0),
            worker_slots: u32::try_from(w).unwrap_or(0),
        }),
        _ => None,
    };
    let pool = CellPool::new(
        capacity.as_ref().map_or(0, |c| c.worker_slots),
        u32::try_from(row.workers).unwrap_or(0),
    );
    let isolation = isolation_from(row.isolation).map_err(|e| ServiceError::Corrupt {
        action: "read a cell's isolation report",
        message: format!("cell {}: {e}", row.name),
    })?;
    Ok(Cell {
        isolation,
        tunnel_connected,
        id: row.id,
        name: row.name,
        runtime,
        capacity,
        agent_version: row.agent_version,
        environments: row.environments,
        pool,
        registered_at: row.registered_at,
        last_seen_at: row.last_seen_at,
        created_at: row.created_at,
        warm_pool: u32::try_from(row.warm_pool).unwrap_or(0),
        warm_ready: u32::try_from(row.warm_ready).unwrap_or(0),
        agent_panics: u64::try_from(row.agent_panics).unwrap_or(0),
    })
}

/// A cell's stored isolation report; `None` when its agent sent none.
pub(crate) fn isolation_from(
    stored: Option<serde_json::Value>,
) -> Result<Option<CellIsolation>, serde_json::Error> {
    stored.map(serde_json::from_value).transpose()
}

/// Problems an agent may list in its isolation report, and the length of each.
const MAX_ISOLATION_PROBLEMS: usize = 32;
const MAX_ISOLATION_PROBLEM_LEN: usize = 500;

fn validate_isolation(isolation: &CellIsolation, errors: &mut FieldErrors) {
    if isolation
        .cgroups
        .as_deref()
        .is_some_and(|v| !matches!(v, "v1" | "v2"))
    {
        errors.push("isolation.cgroups", "must be v1 or v2 when given");
    }
    if isolation.problems.len() > MAX_ISOLATION_PROBLEMS
        || isolation
            .problems
            .iter()
            .any(|p| p.trim().is_empty() || p.len() > MAX_ISOLATION_PROBLEM_LEN)
    {
        errors.push(
            "isolation.problems",
            format!(
                "must be at most {MAX_ISOLATION_PROBLEMS} sentences of 1 to \
                 {MAX_ISOLATION_PROBLEM_LEN} characters"
            ),
        );
    }
}

/// When the cell `cell` was last heard from, given the seconds since (by the database's clock;
/// a read that began just before the agent's latest contact may see a negative age: none).
pub(crate) fn contact(cell: Option<&str>, silent_secs: Option<f64>) -> Option<CellContact<'_>> {
    Some(CellContact {
        cell: cell?,
        silent_for: Duration::try_from_secs_f64(silent_secs?.max(0.0)).unwrap_or(Duration::MAX),
    })
}

/// The cell a cell token may act as; any other cell's routes answer "not found".
pub(super) fn own_cell(actor: &Actor, cell: &str) -> Result<Uuid, ServiceError> {
    match &actor.principal {
        Principal::Cell { id, name } if name == cell => Ok(*id),
        Principal::Cell { .. } => Err(ServiceError::not_found("cell", cell)),
        _ => Err(ServiceError::Forbidden(
            "only the cell's own agent may do this".to_owned(),
        )),
    }
}

/// The live cell with the most room, by fewest environments placed; ties by id.
fn pick(rooms: &[persistence::cells::CellRoom]) -> Option<usize> {
    rooms
        .iter()
        .enumerate()
        .filter(|(_, r)| r.placed < i64::from(r.max_environments))
        .min_by_key(|(_, r)| (r.placed, r.id))
        .map(|(i, _)| i)
}

impl Services {
    /// Makes sure the cell exists with this token (`HANGAR_BOOTSTRAP_CELL`): creates it, or
    /// replaces its token when another was set; refuses a cell of that name with another
    /// runtime. Audited as the platform's doing.
    pub async fn bootstrap_cell(
        &self,
        name: &CellName,
        runtime: Runtime,
        token: &str,
    ) -> Result<(), ServiceError> {
        let hash = auth::hash(token);
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        let action = match persistence::cells::lock_token(&mut tx, name.as_str())
            .await
            .store("read a cell")?
        {
            None => {
                persistence::cells::insert(
                    &mut tx,
                    Uuid::new_v4(),
                    name.as_str(),
                    runtime_str(runtime),
                    &hash,
                )
                .await
                .store("create a cell")?;
                "cell.create"
            }
            Some((existing, _)) if existing != runtime_str(runtime) => {
                return Err(ServiceError::Conflict {
                    field: None,
                    message: format!(
                        "cell {:?} exists with the {existing} runtime, not {}",
                        name.as_str(),
                        runtime_str(runtime)
                    ),
                });
            }
            Some((_, current)) if auth::same_hash(&current, &hash) => return Ok(()),
            Some(_) => {
                persistence::cells::set_token_hash(&mut tx, name.as_str(), &hash)
                    .await
                    .store("replace a cell's token")?;
                "cell.token.replace"
            }
        };
        persistence::audit::insert(
            &mut tx,
            NewAudit {
                tenant_id: None,
                actor: "platform:bootstrap",
                action,
                target: &format!("cells/{name}"),
                request_id: None,
                details: json!({ "runtime": runtime_str(runtime), "bootstrap": true }),
            },
        )
        .await
        .store("audit a bootstrap cell")?;
        tx.commit().await.store("commit a bootstrap cell")?;
        Ok(())
    }

    pub async fn create_cell(
        &self,
        actor: &Actor,
        req: CreateCell,
    ) -> Result<CellCreated, ServiceError> {
        self.require_platform_admin(actor)?;
        let name = CellName::parse(req.name.as_str()).map_err(|e| {
            FieldErrors::from(hangar_tenants::FieldError::new("name", e.to_string()))
        })?;
        let token = auth::generate(auth::CELL_TOKEN_PREFIX);
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        persistence::cells::insert(
            &mut tx,
            Uuid::new_v4(),
            name.as_str(),
            runtime_str(req.runtime),
            &token.hash,
        )
        .await
        .map_err(|e| match unique_violation(&e) {
            Some(_) => ServiceError::Conflict {
                field: Some("name"),
                message: format!("a cell named {:?} already exists", name.as_str()),
            },
            None => ServiceError::Store {
                action: "create a cell",
                source: e,
            },
        })?;
        persistence::audit::insert(
            &mut tx,
            NewAudit {
                tenant_id: None,
                actor: &actor.principal.actor(),
                action: "cell.create",
                target: &format!("cells/{name}"),
                request_id: actor.request_id.as_deref(),
                details: json!({ "runtime": runtime_str(req.runtime) }),
            },
        )
        .await
        .store("audit a cell's creation")?;
        tx.commit().await.store("commit a cell's creation")?;
        let row = persistence::cells::by_name(&self.db.pool, name.as_str())
            .await
            .store("read a cell")?
            .ok_or_else(|| ServiceError::not_found("cell", name.as_str()))?;
        Ok(CellCreated {
            cell: cell_out(row, false)?,
            token: token.secret,
        })
    }

    pub async fn list_cells(&self, actor: &Actor) -> Result<Vec<Cell>, ServiceError> {
        self.require_platform_admin(actor)?;
        let elsewhere = persistence::tunnels::connected(
            &self.db.pool,
            crate::tunnel::RECORD_FRESH.as_secs_f64(),
        )
        .await
        .store("read the cells' tunnels")?;
        persistence::cells::list(&self.db.pool)
            .await
            .store("list cells")?
            .into_iter()
            .map(|row| {
                let up = self.tunnels.is_connected(row.id) || elsewhere.contains(&row.id);
                cell_out(row, up)
            })
            .collect()
    }

    /// Whether `cell`'s agent holds its tunnel open to this replica or to another.
    async fn tunnel_up(&self, cell: Uuid) -> Result<bool, ServiceError> {
        if self.tunnels.is_connected(cell) {
            return Ok(true);
        }
        Ok(persistence::tunnels::holder(
            &self.db.pool,
            cell,
            crate::tunnel::RECORD_FRESH.as_secs_f64(),
        )
        .await
        .store("read a cell's tunnel")?
        .is_some())
    }

    /// The cell whose tunnel the caller may open: its own cell's only (by cell token).
    pub fn tunnel_cell(&self, actor: &Actor, cell: &str) -> Result<Uuid, ServiceError> {
        own_cell(actor, cell)
    }

    /// An agent announces itself and its capacity; environments waiting for a cell are placed.
    pub async fn register_cell(
        &self,
        actor: &Actor,
        cell: &str,
        req: RegisterCell,
    ) -> Result<Cell, ServiceError> {
        let id = own_cell(actor, cell)?;
        let mut errors = FieldErrors::default();
        if !(1..=10_000).contains(&req.capacity.max_environments) {
            errors.push("capacity.max_environments", "must be between 1 and 10000");
        }
        if req.capacity.worker_slots > 100_000 {
            errors.push("capacity.worker_slots", "must be at most 100000");
        }
        if req.agent_version.is_empty() || req.agent_version.len() > 64 {
            errors.push("agent_version", "must be 1 to 64 characters");
        }
        if let Some(isolation) = &req.isolation {
            validate_isolation(isolation, &mut errors);
        }
        if req.warm_pool > hangar_tenants::warm::MAX_WARM_POOL {
            errors.push(
                "warm_pool",
                format!("must be at most {}", hangar_tenants::warm::MAX_WARM_POOL),
            );
        }
        errors.into_result(())?;
        let isolation = req
            .isolation
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| ServiceError::Corrupt {
                action: "serialise a cell's isolation report",
                message: e.to_string(),
            })?;
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        persistence::cells::register(
            &mut tx,
            id,
            persistence::cells::Registration {
                max_environments: i32::try_from(req.capacity.max_environments).unwrap_or(i32::MAX),
                worker_slots: i32::try_from(req.capacity.worker_slots).unwrap_or(i32::MAX),
                agent_version: &req.agent_version,
                isolation: isolation.as_ref(),
                warm_pool: i32::try_from(req.warm_pool).unwrap_or(0),
                agent_panics: i64::try_from(req.agent_panics).unwrap_or(i64::MAX),
            },
        )
        .await
        .store("register a cell")?;
        self.place_pending(&mut tx).await?;
        self.keep_warm_pools(&mut tx).await?;
        tx.commit().await.store("commit a cell's registration")?;
        let row = persistence::cells::by_name(&self.db.pool, cell)
            .await
            .store("read a cell")?
            .ok_or_else(|| ServiceError::not_found("cell", cell))?;
        let up = self.tunnel_up(row.id).await?;
        cell_out(row, up)
    }

    /// Places one new environment on the live cell with the most room, if any.
    pub(crate) async fn place_one(
        &self,
        conn: &mut PgConnection,
        env: Uuid,
    ) -> Result<Option<Uuid>, ServiceError> {
        let rooms = persistence::cells::lock_live_with_room(conn, self.cell_ttl.as_secs_f64())
            .await
            .store("find a cell with room")?;
        let Some(i) = pick(&rooms) else {
            return Ok(None);
        };
        let cell = rooms[i].id;
        persistence::environments::place(conn, env, cell)
            .await
            .store("place an environment")?;
        persistence::cells::notify_changed(conn, cell)
            .await
            .store("notify a cell")?;
        Ok(Some(cell))
    }

    /// Places environments that wait for a cell, oldest first, while live cells have room.
    async fn place_pending(&self, conn: &mut PgConnection) -> Result<(), ServiceError> {
        let waiting = persistence::environments::unplaced(conn, 1000)
            .await
            .store("find environments waiting for a cell")?;
        if waiting.is_empty() {
            return Ok(());
        }
        let mut rooms = persistence::cells::lock_live_with_room(conn, self.cell_ttl.as_secs_f64())
            .await
            .store("find a cell with room")?;
        let mut notified = Vec::new();
        for env in waiting {
            let Some(i) = pick(&rooms) else { break };
            persistence::environments::place(conn, env, rooms[i].id)
                .await
                .store("place an environment")?;
            rooms[i].placed += 1;
            if !notified.contains(&rooms[i].id) {
                notified.push(rooms[i].id);
            }
        }
        for cell in notified {
            persistence::cells::notify_changed(conn, cell)
                .await
                .store("notify a cell")?;
        }
        Ok(())
    }

    /// The environments of the cell whose desired state changed after `since`. When none did,
    /// waits up to `wait` for a change (a long poll), then answers, possibly with none.
    pub async fn assignments(
        &self,
        actor: &Actor,
        cell: &str,
        since: i64,
        wait: Duration,
    ) -> Result<(i64, Vec<Assignment>), ServiceError> {
        let id = own_cell(actor, cell)?;
        persistence::cells::touch(&self.db.pool, id)
            .await
            .store("record a cell's heartbeat")?;
        // An environment created while this cell was registering saw no live cell, and the
        // registration did not see the environment yet: every poll places what still waits.
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        self.place_pending(&mut tx).await?;
        self.keep_warm_pools(&mut tx).await?;
        tx.commit().await.store("commit placements")?;
        // A poll is the heartbeat of an agent with nothing to report: it never outlasts half
        // the cell's TTL, so an agent waiting in one is not taken for a silent one.
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT).min(self.cell_ttl / 2);
        let mut changes = self.changes.clone();
        loop {
            changes.borrow_and_update();
            let rows =
                persistence::environments::assignments(&self.db.pool, id, since, ASSIGNMENT_PAGE)
                    .await
                    .store("read a cell's assignments")?;
            if !rows.is_empty() {
                let cursor = rows.last().map_or(since, |r| r.change_seq);
                let out = rows
                    .into_iter()
                    .map(|r| {
                        Ok(Assignment {
                            spec: serde_json::from_value(r.spec).map_err(|e| {
                                ServiceError::Corrupt {
                                    action: "read an environment's spec",
                                    message: format!("environment {}: {e}", r.id),
                                }
                            })?,
                            secrets: r
                                .secrets
                                .as_deref()
                                .map(|blob| self.master_key.open(r.id, blob))
                                .transpose()?,
                            id: r.id,
                            tenant: r.tenant,
                            name: r.name,
                            revision: r.revision,
                            delete: r.delete_requested,
                            hibernate: r.hibernate,
                            warm: r.warm,
                            airflow_path: r.airflow_path.unwrap_or_default(),
                        })
                    })
                    .collect::<Result<Vec<_>, ServiceError>>()?;
                return Ok((cursor, out));
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Ok((since, Vec::new()));
            }
        }
    }

    /// Records what an agent observed of one of its environments and moves its phase.
    pub async fn report_observed(
        &self,
        actor: &Actor,
        cell: &str,
        env: Uuid,
        observed: ObservedState,
    ) -> Result<Environment, ServiceError> {
        let cell_id = own_cell(actor, cell)?;
        // Before the transaction: it locks the environment, and changes of an environment lock
        // its cell first (see `persistence::cells`).
        persistence::cells::touch(&self.db.pool, cell_id)
            .await
            .store("record a cell's heartbeat")?;
        let not_found = || ServiceError::not_found("environment", env.to_string());
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        let locked = persistence::environments::lock(&mut tx, env)
            .await
            .store("lock an environment")?
            .filter(|l| l.cell_id == Some(cell_id))
            .ok_or_else(not_found)?;
        let current = super::stored_phase(&locked.phase)?;
        let previous_requirements = persistence::environments::by_id(&mut tx, env)
            .await
            .store("read an environment")?
            .and_then(|r| r.observed)
            .and_then(|o| o.get("bucket_requirements").cloned())
            .and_then(|v| v.as_str().map(str::to_owned));
        let change = derive_phase(
            current,
            locked.revision,
            locked.delete_requested,
            locked.hibernate,
            &observed,
        );
        let observed_value =
            serde_json::to_value(&observed).map_err(|e| ServiceError::Corrupt {
                action: "serialise observed state",
                message: e.to_string(),
            })?;
        persistence::environments::record_observed(
            &mut tx,
            env,
            &observed_value,
            change.phase.as_str(),
            change.message.as_deref(),
        )
        .await
        .store("record observed state")?;
        let row = persistence::environments::by_id(&mut tx, env)
            .await
            .store("read an environment")?
            .ok_or_else(not_found)?;
        if change.phase != current {
            persistence::audit::insert(
                &mut tx,
                NewAudit {
                    tenant_id: Some(locked.tenant_id),
                    actor: &actor.principal.actor(),
                    action: "environment.phase",
                    target: &format!("{}/environments/{}", row.tenant, row.name),
                    request_id: actor.request_id.as_deref(),
                    details: json!({
                        "from": current.as_str(),
                        "to": change.phase.as_str(),
                        "revision": locked.revision,
                        "observed_revision": observed.revision,
                        "message": change.message,
                    }),
                },
            )
            .await
            .store("audit a phase change")?;
        }
        tx.commit().await.store("commit observed state")?;
        let t = TenantRef {
            id: locked.tenant_id,
            name: row.tenant.clone(),
        };
        // Idle for its whole window: asked to hibernate (it wakes on use and ahead of its
        // next scheduled run).
        let window = self.idle_window(&row.spec);
        let idle = !locked.hibernate
            && !locked.delete_requested
            && change.phase == Phase::Available
            && hangar_tenants::idle_window_passed(
                window,
                &observed,
                locked.last_used_at,
                chrono::Utc::now(),
            );
        if let (true, Some(window)) = (idle, window) {
            tracing::info!(env = %env, idle_since = ?observed.idle_since, next_run = ?observed.next_run, "idle for its window; hibernating");
            match self
                .hibernate_idle(actor, &t, &row.name, window, &observed)
                .await
            {
                Ok(e) => return Ok(e),
                Err(e) => {
                    tracing::warn!(env = %env, error = %e, "an idle environment could not be asked to hibernate")
                }
            }
        }
        // A new requirements.txt in the bucket is an update of the environment, as if the tenant
        // had sent it: a resolution failure is UPDATE_FAILED and the old runtime keeps running.
        let bucket_requirements = observed
            .bucket_requirements
            .filter(|text| previous_requirements.as_ref() != Some(text));
        let spec_requirements = row.spec.get("requirements").and_then(|v| v.as_str());
        if let Some(text) = bucket_requirements.filter(|t| Some(t.as_str()) != spec_requirements) {
            let req = UpdateEnvironment {
                requirements: Some(text),
                ..Default::default()
            };
            match self.update_in_tenant(actor, &t, &row.name, req, None).await {
                Ok(updated) => return Ok(updated),
                Err(e) => tracing::warn!(
                    env = %env,
                    error = %e,
                    "the bucket's requirements.txt could not become an update"
                ),
            }
        }
        self.environment_out(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persistence::cells::CellRoom;

    fn room(id: u128, max: i32, placed: i64) -> CellRoom {
        CellRoom {
            id: Uuid::from_u128(id),
            max_environments: max,
            placed,
            warm_pool: 0,
        }
    }

    #[test]
    fn placement_prefers_the_emptiest_cell_with_room() {
        assert_eq!(
            pick(&[room(1, 10, 5), room(2, 10, 2), room(3, 2, 2)]),
            Some(1)
        );
        assert_eq!(pick(&[room(1, 1, 1), room(2, 3, 3)]), None);
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[room(2, 5, 1), room(1, 5, 1)]), Some(1));
    }
}
