//! Reaching an environment's own Airflow REST API through the control plane (MWAA's
//! InvokeRestApi): Hangar's tokens decide who may call it at all, and the control plane logs in
//! as the environment's platform user whose Airflow role matches the caller's Hangar role
//! (`hangar_tenants::airflow_users`), so Airflow's own role check decides what the call may do.
//! Those users' passwords never leave the platform. Every call goes over the environment's
//! cell's tunnel (`airflow_call`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hangar_tenants::airflow_users::AirflowRole;
use hangar_tenants::api::{ImportError, Role};
use hangar_tenants::tunnel::AUTHORITY;
use hangar_tenants::Phase;
use hyper::{Method, StatusCode};
use uuid::Uuid;

use super::airflow_call::AirflowRequest;
use super::{ServiceError, Services, StoreContext};
use crate::auth::{Actor, Principal};
use crate::persistence;

/// How long a token from an environment's Airflow is reused (Airflow issues them for a day).
const TOKEN_REUSE: Duration = Duration::from_secs(600);
/// How long the platform waits for an environment's Airflow to answer: less than the Hangar
/// client's own 30 s, so a slow environment is a 503 that names it, not the caller's timeout.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(20);
/// How long the platform waits for its login to an environment's Airflow.
const LOGIN_WITHIN: Duration = Duration::from_secs(10);
/// The largest answer of an environment's Airflow the proxy passes on (64 MiB): answers are
/// streamed, not held in memory, but an environment (running its tenant's code) must not be
/// able to make the control plane relay without end. Larger than any page, asset or REST
/// answer of Airflow's; a task log beyond it is read with `hangar logs` instead.
/// `HANGAR_PROXY_MAX_RESPONSE_BYTES` changes it.
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// The Airflow role a caller acts with in an environment: its Hangar role's
/// (`AirflowRole::of`); the platform admin's is Airflow's admin.
fn airflow_role(actor: &Actor) -> AirflowRole {
    match &actor.principal {
        Principal::Tenant { role, .. } => AirflowRole::of(*role),
        Principal::PlatformAdmin => AirflowRole::Admin,
        // Never gets this far (`authorize_tenant` refuses cells); the weakest role if it did.
        Principal::Cell { .. } => AirflowRole::Viewer,
    }
}

/// The Airflow user a caller acts as in its environments (`hangar-op` for an editor).
pub fn airflow_user_of(actor: &Actor) -> &'static str {
    airflow_role(actor).user()
}

/// Tokens of environments' Airflow APIs, by environment and the role they were issued for.
#[derive(Debug, Default)]
pub struct AirflowTokens(Mutex<HashMap<(Uuid, AirflowRole), (String, Instant)>>);

impl AirflowTokens {
    fn get(&self, env: Uuid, role: AirflowRole) -> Option<String> {
        let map = self.0.lock().ok()?;
        let (t, at) = map.get(&(env, role))?;
        (at.elapsed() < TOKEN_REUSE).then(|| t.clone())
    }

    fn put(&self, env: Uuid, role: AirflowRole, token: String) {
        if let Ok(mut map) = self.0.lock() {
            map.retain(|_, (_, at)| at.elapsed() < TOKEN_REUSE);
            map.insert((env, role), (token, Instant::now()));
        }
    }

    /// Forgets a token Airflow refused (expired, or the environment was re-created).
    pub fn forget(&self, env: Uuid, role: AirflowRole) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&(env, role));
        }
    }
}

/// Where to send a proxied call, and the bearer token to send it with.
#[derive(Debug, Clone)]
pub struct AirflowTarget {
    pub env_id: Uuid,
    /// The Airflow role the token acts with.
    pub role: AirflowRole,
    /// The cell the environment runs on, whose tunnel the call goes through.
    pub cell_id: Uuid,
    pub cell: String,
    /// The environment's own Airflow path (`webserver_path`), without a final `/`.
    pub path: String,
    pub token: String,
}

impl AirflowTarget {
    /// The environment's Airflow as the platform names it: its own path on the tunnel's
    /// authority, which resolves nowhere (the cell's agent knows where it listens).
    pub fn base_url(&self) -> String {
        format!("http://{AUTHORITY}{}", self.path)
    }
}

impl Services {
    /// Forgets a cached login of an environment's Airflow.
    pub fn forget_airflow_token(&self, target: &AirflowTarget) {
        self.airflow_tokens.forget(target.env_id, target.role);
    }

    /// The environment's Airflow API for this caller, logged in with the Airflow role of the
    /// caller's Hangar role: any role of the tenant may call, and Airflow decides what that
    /// role may do there (a viewer reads, an editor also triggers and changes).
    pub async fn airflow_target(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
    ) -> Result<AirflowTarget, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        let role = airflow_role(actor);
        let row = self.live_environment(&t, env).await?;
        let row = self.awake_for_use(actor, &t, row).await?;
        let (id, cell) = (row.id, row.cell_id.zip(row.cell.clone()));
        let path = super::environments::airflow_path(&row);
        let e = self.environment_out(row)?;
        // The api-server's reported address is not used (the cell's agent knows it); that it
        // was reported says the api-server runs.
        // `UNAVAILABLE` runs too (a component unhealthy, or the cell silent): its api-server may
        // well answer, and if the cell is gone the tunnel says so (503).
        let up = matches!(
            e.phase,
            Phase::Available | Phase::Unavailable | Phase::Updating | Phase::UpdateFailed
        );
        let api = e
            .observed
            .as_ref()
            .is_some_and(|o| o.endpoints.contains_key("api"));
        let no_api = || {
            format!(
                "environment {env:?} has no running Airflow API (phase {})",
                e.phase
            )
        };
        // Not running is the environment's state (creating, failed, hibernated, being deleted): a
        // conflict, as for any request its state does not allow. Running without an api-server
        // reported yet is a moment to wait: unavailable, retry.
        if !up {
            return Err(ServiceError::Conflict {
                field: None,
                message: no_api(),
            });
        }
        let (cell_id, cell) = cell
            .filter(|_| api)
            .ok_or_else(|| ServiceError::Unavailable(no_api()))?;
        let mut target = AirflowTarget {
            env_id: id,
            role,
            cell_id,
            cell,
            path: path.trim_end_matches('/').to_owned(),
            token: String::new(),
        };
        if let Some(token) = self.airflow_tokens.get(id, role) {
            target.token = token;
            return Ok(target);
        }
        let sealed = persistence::environments::sealed_secrets(&self.db.pool, id)
            .await
            .store("read an environment's secrets")?
            .ok_or_else(|| {
                ServiceError::Unavailable(format!("environment {env:?} has no secrets"))
            })?;
        let secrets = self.master_key.open(id, &sealed)?;
        let login = AirflowRequest::new(Method::POST, "auth/token", LOGIN_WITHIN).json(
            &serde_json::json!({
                "username": role.user(),
                "password": role.password(&secrets),
            }),
        );
        let (status, body) = self.airflow_json(env, &target, login).await?;
        let token = body["access_token"]
            .as_str()
            .filter(|_| status.is_success())
            .ok_or_else(|| {
                ServiceError::Unavailable(format!(
                    "environment {env:?} refused the platform's login ({status})"
                ))
            })?
            .to_owned();
        self.airflow_tokens.put(id, role, token.clone());
        target.token = token;
        Ok(target)
    }

    /// The environment's DAG import errors, as its Airflow reports them: file and message.
    pub async fn import_errors(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
    ) -> Result<Vec<ImportError>, ServiceError> {
        for attempt in 0..2 {
            let target = self.airflow_target(actor, tenant, env).await?;
            let req = AirflowRequest::new(
                Method::GET,
                "api/v2/importErrors?limit=1000&order_by=filename",
                ANSWER_WITHIN,
            );
            let (status, body) = self.airflow_json(env, &target, req).await?;
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.forget_airflow_token(&target);
                continue;
            }
            let list = body["import_errors"]
                .as_array()
                .filter(|_| status.is_success());
            let list = list.ok_or_else(|| {
                ServiceError::Unavailable(format!(
                    "environment {env:?} answered {status} for its import errors"
                ))
            })?;
            return Ok(list
                .iter()
                .map(|e| ImportError {
                    file: e["filename"].as_str().unwrap_or_default().to_owned(),
                    message: e["stack_trace"].as_str().unwrap_or_default().to_owned(),
                    at: e["timestamp"].as_str().and_then(|t| t.parse().ok()),
                })
                .collect());
        }
        Err(ServiceError::Unavailable(format!(
            "environment {env:?} refused the platform's login"
        )))
    }
}
