//! The environment lifecycle as tenants drive it: create (with placement and idempotency keys),
//! read, update (optimistic concurrency on `revision`) and delete.

use hangar_tenants::api::{CreateEnvironment, Environment, Role, UpdateEnvironment};
use hangar_tenants::{phase_as_read, EnvironmentSpec, FieldError, Phase, PhaseChange};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ServiceError, Services, StoreContext, TenantRef};
use crate::auth::Actor;
use crate::persistence::{self, audit::NewAudit, environments::EnvRow, unique_violation};

/// Shown while no registered cell can take an environment.
pub const WAITING_FOR_CELL: &str =
    "waiting for a data-plane cell with room: no registered cell can take this environment yet";

/// How long a use of a hibernated environment waits for it to wake: under the Hangar client's
/// own 30 s, so a slow wake is a 503 to retry, not the caller's timeout.
pub const WAKE_WAIT: std::time::Duration = std::time::Duration::from_secs(25);
const WAKE_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// How long an environment's `last_used_at` may lag, to spare a write on every request.
const USE_TOUCH_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// A client's `Idempotency-Key` and a hash of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: Vec<u8>,
}

/// The outcome of a create: the environment, and whether an earlier request made it.
#[derive(Debug, Clone)]
pub struct Created {
    pub environment: Environment,
    pub replayed: bool,
}

fn environment_from_row(row: EnvRow) -> Result<Environment, ServiceError> {
    let corrupt = |what: &'static str, e: String| ServiceError::Corrupt {
        action: what,
        message: format!("environment {}: {e}", row.id),
    };
    let spec: EnvironmentSpec = serde_json::from_value(row.spec.clone())
        .map_err(|e| corrupt("read an environment's spec", e.to_string()))?;
    let phase: Phase = row
        .phase
        .parse()
        .map_err(|e: hangar_tenants::phase::UnknownPhase| {
            corrupt("read an environment's phase", e.to_string())
        })?;
    let observed = row
        .observed
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| corrupt("read an environment's observed state", e.to_string()))?;
    let isolation = super::cells::isolation_from(row.cell_isolation.clone())
        .map_err(|e| corrupt("read its cell's isolation report", e.to_string()))?;
    let isolated = row
        .cell
        .as_ref()
        .map(|_| isolation.is_some_and(|i| i.isolated));
    let webserver_url = (phase != Phase::Deleted).then(|| airflow_path(&row));
    Ok(Environment {
        webserver_url,
        bucket: None,
        id: row.id,
        tenant: row.tenant,
        name: row.name,
        revision: row.revision,
        phase,
        status_message: row.status_message,
        spec,
        cell: row.cell,
        isolated,
        observed,
        last_used_at: row.last_used_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// The path the environment's Airflow is served under: `webserver_path` of its tenant and name,
/// or the id-named path of a claimed prepared environment.
pub(crate) fn airflow_path(row: &EnvRow) -> String {
    row.airflow_path
        .clone()
        .unwrap_or_else(|| hangar_tenants::api::webserver_path(&row.tenant, &row.name))
}

fn spec_json(spec: &EnvironmentSpec) -> Result<serde_json::Value, ServiceError> {
    serde_json::to_value(spec).map_err(|e| ServiceError::Corrupt {
        action: "serialise an environment spec",
        message: e.to_string(),
    })
}

/// The top-level spec fields that differ between two specs, for the audit log.
fn changed_fields(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    match (old.as_object(), new.as_object()) {
        (Some(o), Some(n)) => n
            .iter()
            .filter(|(k, v)| o.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect(),
        _ => Vec::new(),
    }
}

impl Services {
    /// An environment as the API shows it: its row, and where its files are in the bucket.
    /// Its phase and message are as its agent's reports made them unless its cell has been
    /// silent for `HANGAR_CELL_TTL_SECS` ([`hangar_tenants::phase_as_read`]).
    pub(crate) fn environment_out(&self, row: EnvRow) -> Result<Environment, ServiceError> {
        let silent_secs = row.cell_silent_secs;
        let mut e = environment_from_row(row)?;
        let read = phase_as_read(
            PhaseChange {
                phase: e.phase,
                message: e.status_message.take(),
            },
            super::cells::contact(e.cell.as_deref(), silent_secs),
            self.cell_ttl,
        );
        e.phase = read.phase;
        e.status_message = read.message;
        if e.phase != Phase::Deleted {
            let path = e.webserver_url.take().unwrap_or_default();
            e.webserver_url = Some(self.webserver_url(&e.tenant, &e.name, &path));
            e.bucket = self.bucket.as_ref().map(|b| {
                use hangar_tenants::bucket_layout as layout;
                let (t, n) = (&e.tenant, &e.name);
                hangar_tenants::api::EnvironmentBucket {
                    dags: b.url_of(&b.path(&layout::dags_prefix(t, n))),
                    plugins: b.url_of(&b.path(&layout::plugins_prefix(t, n))),
                    requirements: b
                        .url_of(&b.path(&layout::requirements_key(t, n)))
                        .trim_end_matches('/')
                        .to_owned(),
                }
            });
        }
        Ok(e)
    }

    pub async fn create_environment(
        &self,
        actor: &Actor,
        tenant: &str,
        req: CreateEnvironment,
        idempotency: Option<Idempotency>,
    ) -> Result<Created, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Editor).await?;
        let spec = EnvironmentSpec::create(req, &self.platform)?;
        let spec_value = spec_json(&spec)?;
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        if let Some(idem) = &idempotency {
            persistence::environments::lock_idempotency_key(&mut tx, t.id, &idem.key)
                .await
                .store("lock an idempotency key")?;
            let earlier = persistence::environments::find_idempotency_key(&mut tx, t.id, &idem.key)
                .await
                .store("look up an idempotency key")?;
            if let Some(earlier) = earlier {
                if earlier.request_hash != idem.request_hash {
                    return Err(FieldError::new(
                        "Idempotency-Key",
                        "this key was already used with a different request body",
                    )
                    .into());
                }
                let row = persistence::environments::by_id(&mut tx, earlier.environment_id)
                    .await
                    .store("read an environment")?
                    .ok_or_else(|| ServiceError::not_found("environment", spec.name.as_str()))?;
                tx.commit().await.store("end a transaction")?;
                return Ok(Created {
                    environment: self.environment_out(row)?,
                    replayed: true,
                });
            }
        }
        let taken = |e: sqlx::Error, action: &'static str| match unique_violation(&e) {
            Some(_) => ServiceError::Conflict {
                field: Some("name"),
                message: format!(
                    "tenant {} already has an environment named {:?}",
                    t.name,
                    spec.name.as_str()
                ),
            },
            None => ServiceError::Store { action, source: e },
        };
        // A prepared environment that can run this spec as it is, if a cell has one up.
        let claimed = self
            .claim_warm(&mut tx, t.id, &spec, &spec_value)
            .await
            .map_err(|e| taken(e, "claim a prepared environment"))?;
        let (id, cell) = match claimed {
            Some(c) => {
                self.keep_warm_pools(&mut tx).await?;
                (c.id, Some(c.cell_id))
            }
            None => {
                let id = Uuid::new_v4();
                let sealed = self.master_key.seal(id, &crate::secrets::generate())?;
                persistence::environments::insert(
                    &mut tx,
                    id,
                    t.id,
                    spec.name.as_str(),
                    &spec_value,
                    Phase::Creating.as_str(),
                    WAITING_FOR_CELL,
                    &sealed,
                )
                .await
                .map_err(|e| taken(e, "create an environment"))?;
                (id, self.place_one(&mut tx, id).await?)
            }
        };
        if let Some(idem) = &idempotency {
            persistence::environments::save_idempotency_key(
                &mut tx,
                t.id,
                &idem.key,
                &idem.request_hash,
                id,
            )
            .await
            .store("save an idempotency key")?;
        }
        audit_env(
            &mut tx,
            actor,
            &t,
            "environment.create",
            spec.name.as_str(),
            json!({
                "revision": if claimed.is_some() { 2 } else { 1 },
                "cell": cell,
                "spec": spec_value,
                "prepared": claimed.is_some(),
            }),
        )
        .await?;
        let row = persistence::environments::by_id(&mut tx, id)
            .await
            .store("read an environment")?
            .ok_or_else(|| ServiceError::not_found("environment", spec.name.as_str()))?;
        tx.commit()
            .await
            .store("commit an environment's creation")?;
        Ok(Created {
            environment: self.environment_out(row)?,
            replayed: false,
        })
    }

    pub async fn get_environment(
        &self,
        actor: &Actor,
        tenant: &str,
        name: &str,
    ) -> Result<Environment, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        let row = persistence::environments::by_name(&self.db.pool, t.id, name)
            .await
            .store("read an environment")?
            .ok_or_else(|| ServiceError::not_found("environment", name))?;
        self.environment_out(row)
    }

    /// One page of the tenant's environments whose name contains `name_part` (any case), by
    /// name, and how many match in all.
    pub async fn list_environments_page(
        &self,
        actor: &Actor,
        tenant: &str,
        name_part: &str,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<Environment>, u64), ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        let total = persistence::environments::count_matching(&self.db.pool, t.id, name_part)
            .await
            .store("count environments")?;
        let rows = persistence::environments::list_page(
            &self.db.pool,
            t.id,
            name_part,
            i64::from(per_page),
            i64::from(page) * i64::from(per_page),
        )
        .await
        .store("list environments")?;
        let envs = rows
            .into_iter()
            .map(|r| self.environment_out(r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((envs, u64::try_from(total).unwrap_or(0)))
    }

    /// An environment's revision history from the audit log (who created, changed or deleted
    /// it, and what changed), newest first; any role of the tenant may read it.
    pub async fn environment_history(
        &self,
        actor: &Actor,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<hangar_tenants::api::AuditEntry>, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        let row = self.live_environment(&t, name).await?;
        let rows = persistence::audit::environment_changes(
            &self.db.pool,
            t.id,
            &format!("{}/environments/{name}", t.name),
            row.created_at,
            100,
        )
        .await
        .store("read an environment's history")?;
        Ok(rows
            .into_iter()
            .map(|r| hangar_tenants::api::AuditEntry {
                id: r.id,
                actor: r.actor,
                action: r.action,
                target: r.target,
                request_id: r.request_id,
                details: r.details,
                at: r.at,
            })
            .collect())
    }

    pub async fn list_environments(
        &self,
        actor: &Actor,
        tenant: &str,
    ) -> Result<Vec<Environment>, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        persistence::environments::list(&self.db.pool, t.id)
            .await
            .store("list environments")?
            .into_iter()
            .map(|r| self.environment_out(r))
            .collect()
    }

    /// Applies a partial update as the next revision. With `if_match`, only when the
    /// environment is still at that revision. An update that changes nothing makes no revision.
    pub async fn update_environment(
        &self,
        actor: &Actor,
        tenant: &str,
        name: &str,
        req: UpdateEnvironment,
        if_match: Option<i64>,
    ) -> Result<Environment, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Editor).await?;
        self.update_in_tenant(actor, &t, name, req, if_match).await
    }

    /// An update by an actor already authorised for tenant `t` (a tenant's token, or a cell
    /// relaying a change of the environment's `requirements.txt` in the bucket).
    pub(crate) async fn update_in_tenant(
        &self,
        actor: &Actor,
        t: &TenantRef,
        name: &str,
        req: UpdateEnvironment,
        if_match: Option<i64>,
    ) -> Result<Environment, ServiceError> {
        let t = t.clone();
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        let row = self.lock_live_environment(&mut tx, &t, name).await?;
        if let Some(expected) = if_match {
            if expected != row.revision {
                return Err(ServiceError::StaleRevision {
                    expected,
                    current: row.revision,
                });
            }
        }
        let current = self.environment_out(row.clone())?;
        let next_phase = current
            .phase
            .on_new_revision()
            .ok_or_else(|| ServiceError::Conflict {
                field: None,
                message: format!("environment {name:?} is being deleted and cannot be updated"),
            })?;
        let spec = current.spec.update(req, &self.platform)?;
        if spec == current.spec {
            tx.commit().await.store("end a transaction")?;
            return Ok(current);
        }
        let spec_value = spec_json(&spec)?;
        let revision = persistence::environments::update_spec(
            &mut tx,
            row.id,
            row.revision,
            &spec_value,
            next_phase.as_str(),
        )
        .await
        .store("update an environment")?
        .ok_or(ServiceError::StaleRevision {
            expected: row.revision,
            current: row.revision + 1,
        })?;
        if let Some(cell) = row.cell_id {
            persistence::cells::notify_changed(&mut tx, cell)
                .await
                .store("notify a cell")?;
        }
        audit_env(
            &mut tx,
            actor,
            &t,
            "environment.update",
            name,
            json!({ "revision": revision, "changed": changed_fields(&row.spec, &spec_value) }),
        )
        .await?;
        let row = persistence::environments::by_id(&mut tx, row.id)
            .await
            .store("read an environment")?
            .ok_or_else(|| ServiceError::not_found("environment", name))?;
        tx.commit().await.store("commit an environment's update")?;
        self.environment_out(row)
    }

    /// Starts deleting an environment. Its cell tears it down and reports; an environment that
    /// was never placed has nothing running and is `DELETED` at once. Deleting twice is harmless.
    pub async fn delete_environment(
        &self,
        actor: &Actor,
        tenant: &str,
        name: &str,
    ) -> Result<Environment, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Editor).await?;
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        let row = self.lock_live_environment(&mut tx, &t, name).await?;
        if !row.delete_requested {
            let (phase, message) = match row.cell_id {
                Some(_) => (
                    Phase::Deleting,
                    Some("waiting for the cell to remove the environment"),
                ),
                None => (Phase::Deleted, None),
            };
            persistence::environments::request_delete(&mut tx, row.id, phase.as_str(), message)
                .await
                .store("delete an environment")?;
            if let Some(cell) = row.cell_id {
                persistence::cells::notify_changed(&mut tx, cell)
                    .await
                    .store("notify a cell")?;
            }
            audit_env(
                &mut tx,
                actor,
                &t,
                "environment.delete",
                name,
                json!({ "revision": row.revision + 1 }),
            )
            .await?;
        }
        let row = persistence::environments::by_id(&mut tx, row.id)
            .await
            .store("read an environment")?
            .ok_or_else(|| ServiceError::not_found("environment", name))?;
        tx.commit()
            .await
            .store("commit an environment's deletion")?;
        self.environment_out(row)
    }

    /// Asks the environment's cell to hibernate it: its processes stop once no DAG run is
    /// queued or running; its database, files and secrets stay. A wake request, or any use of
    /// it through Hangar, starts it again. Idempotent.
    pub async fn hibernate_environment(
        &self,
        actor: &Actor,
        tenant: &str,
        name: &str,
    ) -> Result<Environment, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Editor).await?;
        self.set_hibernate(actor, &t, name, true, json!({}), None)
            .await
    }

    /// Wakes a hibernated (or hibernating) environment: its cell starts it again. Idempotent.
    pub async fn wake_environment(
        &self,
        actor: &Actor,
        tenant: &str,
        name: &str,
    ) -> Result<Environment, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Editor).await?;
        self.set_hibernate(actor, &t, name, false, json!({}), None)
            .await
    }

    /// The environment awake for a use of it through Hangar (its Airflow API or UI, its CLI):
    /// one asked to hibernate is woken (whatever the caller's role: using it is enough), and
    /// the use waits until its Airflow answers again, for up to [`WAKE_WAIT`]; past that it is a
    /// 503 to retry.
    pub(crate) async fn awake_for_use(
        &self,
        actor: &Actor,
        t: &TenantRef,
        row: EnvRow,
    ) -> Result<EnvRow, ServiceError> {
        // A use restarts the environment's idle window.
        if row
            .last_used_at
            .is_none_or(|at| chrono::Utc::now() - at >= USE_TOUCH_INTERVAL)
        {
            persistence::environments::record_use(&self.db.pool, row.id)
                .await
                .store("record a use of an environment")?;
        }
        let asleep = |r: &EnvRow| {
            r.hibernate
                || r.phase == Phase::Hibernated.as_str()
                || r.phase == Phase::Hibernating.as_str()
        };
        if !asleep(&row) {
            return Ok(row);
        }
        let name = row.name.clone();
        if row.hibernate {
            self.set_hibernate(actor, t, &name, false, json!({ "by": "use" }), None)
                .await?;
        }
        let deadline = tokio::time::Instant::now() + WAKE_WAIT;
        loop {
            let row = self.live_environment(t, &name).await?;
            let running = row.phase == Phase::Available.as_str()
                && row
                    .observed
                    .as_ref()
                    .and_then(|o| o.get("endpoints"))
                    .and_then(|e| e.get("api"))
                    .is_some();
            if running || (!asleep(&row) && row.phase != Phase::Hibernated.as_str()) {
                return Ok(row);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServiceError::Unavailable(format!(
                    "environment {name:?} is waking up from hibernation; retry in a few seconds"
                )));
            }
            tokio::time::sleep(WAKE_POLL).await;
        }
    }

    /// Asks an environment whose idle window has passed (as its agent's report `observed`
    /// says) to hibernate, unless it was used, or asked to hibernate, meanwhile.
    pub(crate) async fn hibernate_idle(
        &self,
        actor: &Actor,
        t: &TenantRef,
        name: &str,
        window: chrono::TimeDelta,
        observed: &hangar_tenants::ObservedState,
    ) -> Result<Environment, ServiceError> {
        let details = json!({
            "by": "idle",
            "idle_since": observed.idle_since,
            "next_run": observed.next_run,
        });
        self.set_hibernate(actor, t, name, true, details, Some((window, observed)))
            .await
    }

    /// Sets or clears an environment's hibernation flag; with `idle`, only if its idle window
    /// still has passed once it is locked.
    async fn set_hibernate(
        &self,
        actor: &Actor,
        t: &TenantRef,
        name: &str,
        hibernate: bool,
        details: serde_json::Value,
        idle: Option<(chrono::TimeDelta, &hangar_tenants::ObservedState)>,
    ) -> Result<Environment, ServiceError> {
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        let row = self.lock_live_environment(&mut tx, t, name).await?;
        if let Some((window, observed)) = idle {
            let passed = hangar_tenants::idle_window_passed(
                Some(window),
                observed,
                row.last_used_at,
                chrono::Utc::now(),
            );
            if row.hibernate || row.delete_requested || !passed {
                tx.commit().await.store("commit a hibernation request")?;
                return self.environment_out(row);
            }
        }
        let phase = super::stored_phase(&row.phase)?;
        let conflict = |message: String| ServiceError::Conflict {
            field: None,
            message,
        };
        if row.delete_requested {
            return Err(conflict(format!("environment {name:?} is being deleted")));
        }
        if hibernate && row.hibernate != hibernate {
            if matches!(phase, Phase::Creating | Phase::CreateFailed) {
                return Err(conflict(format!(
                    "environment {name:?} is not created yet (phase {phase}); it can hibernate once it is AVAILABLE"
                )));
            }
            let cell = row.cell_id.ok_or_else(|| {
                conflict(format!("environment {name:?} is not placed on a cell yet"))
            })?;
            let runtime = persistence::cells::runtime_of(&mut tx, cell)
                .await
                .store("read a cell")?;
            if runtime.as_deref() != Some("process") {
                return Err(conflict(format!(
                    "environment {name:?} runs on a Kubernetes cell, where hibernation is not available yet"
                )));
            }
        }
        if row.hibernate != hibernate {
            let (phase, message) = if hibernate {
                (
                    Phase::Hibernating,
                    "waiting for the cell to stop its processes once no DAG run is queued or running",
                )
            } else {
                (phase, "waking up")
            };
            persistence::environments::set_hibernate(
                &mut tx,
                row.id,
                hibernate,
                phase.as_str(),
                Some(message),
            )
            .await
            .store("record a hibernation request")?;
            if let Some(cell) = row.cell_id {
                persistence::cells::notify_changed(&mut tx, cell)
                    .await
                    .store("notify a cell")?;
            }
            let action = if hibernate {
                "environment.hibernate"
            } else {
                "environment.wake"
            };
            audit_env(&mut tx, actor, t, action, name, details).await?;
        }
        let row = persistence::environments::by_id(&mut tx, row.id)
            .await
            .store("read an environment")?
            .ok_or_else(|| ServiceError::not_found("environment", name))?;
        tx.commit().await.store("commit a hibernation request")?;
        self.environment_out(row)
    }

    /// Locks a live environment for a change: first its cell's row (so the cell's change
    /// numbers commit in order, see `persistence::cells`), then its own row.
    async fn lock_live_environment(
        &self,
        conn: &mut PgConnection,
        t: &TenantRef,
        name: &str,
    ) -> Result<EnvRow, ServiceError> {
        let not_found = || ServiceError::not_found("environment", name);
        let seen = persistence::environments::by_name(&self.db.pool, t.id, name)
            .await
            .store("read an environment")?
            .filter(|r| r.phase != Phase::Deleted.as_str())
            .ok_or_else(not_found)?;
        // Placement only ever moves an environment from no cell to a cell, so one retry is enough.
        for _ in 0..2 {
            let cell = persistence::environments::by_id(conn, seen.id)
                .await
                .store("read an environment")?
                .ok_or_else(not_found)?
                .cell_id;
            if let Some(cell) = cell {
                persistence::cells::lock(conn, cell)
                    .await
                    .store("lock a cell")?;
            }
            let locked = persistence::environments::lock(conn, seen.id)
                .await
                .store("lock an environment")?
                .ok_or_else(not_found)?;
            if locked.phase == Phase::Deleted.as_str() {
                return Err(not_found());
            }
            if locked.cell_id == cell {
                return persistence::environments::by_id(conn, seen.id)
                    .await
                    .store("read an environment")?
                    .ok_or_else(not_found);
            }
        }
        Err(ServiceError::Conflict {
            field: None,
            message: format!("environment {name:?} is being placed; retry"),
        })
    }
}

async fn audit_env(
    conn: &mut PgConnection,
    actor: &Actor,
    t: &TenantRef,
    action: &str,
    env: &str,
    details: serde_json::Value,
) -> Result<(), ServiceError> {
    persistence::audit::insert(
        conn,
        NewAudit {
            tenant_id: Some(t.id),
            actor: &actor.principal.actor(),
            action,
            target: &format!("{}/environments/{env}", t.name),
            request_id: actor.request_id.as_deref(),
            details,
        },
    )
    .await
    .store("write the audit log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_fields_lists_what_differs() {
        let a = json!({"min_workers": 0, "max_workers": 4, "tags": {}});
        let b = json!({"min_workers": 1, "max_workers": 4, "tags": {"a": "b"}});
        assert_eq!(changed_fields(&a, &b), vec!["min_workers", "tags"]);
    }
}
