//! Reaching an environment's own Airflow REST API through the control plane (MWAA's
//! InvokeRestApi): Hangar's tokens and roles decide who may call it, and the control plane logs
//! in with the environment's internal admin user, whose password never leaves the platform.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hangar_tenants::api::{ImportError, Role};
use hangar_tenants::airflow_users::ADMIN_USER;
use hangar_tenants::Phase;
use uuid::Uuid;

use super::{ServiceError, Services, StoreContext};
use crate::auth::Actor;
use crate::persistence;

/// How long a token from an environment's Airflow is reused (Airflow issues them for a day).
const TOKEN_REUSE: Duration = Duration::from_secs(600);
/// How long the platform waits for an environment's Airflow to answer: less than the Hangar
/// client's own 30 s, so a slow environment is a 503 that names it, not the caller's timeout.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(20);
/// How long the platform waits for its login to an environment's Airflow.
const LOGIN_WITHIN: Duration = Duration::from_secs(10);

/// `env`'s Airflow did not answer a request of the platform: why, without its internal address.
pub fn unanswered(env: &str, e: &reqwest::Error, within: Duration) -> ServiceError {
    if e.is_timeout() {
        return ServiceError::Unavailable(format!(
            "environment {env:?} did not answer within {} s",
            within.as_secs()
        ));
    }
    if e.is_connect() {
        return ServiceError::Unavailable(format!(
            "environment {env:?} did not answer: its api-server refused the connection (starting or stopped?)"
        ));
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    ServiceError::Unavailable(format!("environment {env:?} did not answer: {cause}"))
}

/// Tokens of environments' Airflow APIs, by environment.
#[derive(Debug, Default)]
pub struct AirflowTokens(Mutex<HashMap<Uuid, (String, Instant)>>);

impl AirflowTokens {
    fn get(&self, env: Uuid) -> Option<String> {
        let map = self.0.lock().ok()?;
        let (t, at) = map.get(&env)?;
        (at.elapsed() < TOKEN_REUSE).then(|| t.clone())
    }

    fn put(&self, env: Uuid, token: String) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(env, (token, Instant::now()));
        }
    }

    /// Forgets a token Airflow refused (expired, or the environment was re-created).
    pub fn forget(&self, env: Uuid) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&env);
        }
    }
}

/// Where to send a proxied call, and the bearer token to send it with.
#[derive(Debug, Clone)]
pub struct AirflowTarget {
    pub env_id: Uuid,
    pub base_url: String,
    pub token: String,
}

impl Services {
    /// The HTTP client the control plane calls environments with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Forgets the cached login of an environment's Airflow.
    pub fn forget_airflow_token(&self, env: Uuid) {
        self.airflow_tokens.forget(env);
    }

    /// The environment's Airflow API for this caller: viewers may read (GET, HEAD), editors
    /// and admins may also write.
    pub async fn airflow_target(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
        write: bool,
    ) -> Result<AirflowTarget, ServiceError> {
        let need = if write { Role::Editor } else { Role::Viewer };
        let t = self.authorize_tenant(actor, tenant, need).await?;
        let row = self.live_environment(&t, env).await?;
        let id = row.id;
        let e = self.environment_out(row)?;
        let base_url = e
            .observed
            .as_ref()
            .and_then(|o| o.endpoints.get("api").cloned())
            .filter(|_| {
                matches!(
                    e.phase,
                    Phase::Available | Phase::Updating | Phase::UpdateFailed
                )
            })
            .ok_or_else(|| {
                ServiceError::Unavailable(format!(
                    "environment {env:?} has no running Airflow API (phase {})",
                    e.phase
                ))
            })?;
        if let Some(token) = self.airflow_tokens.get(id) {
            return Ok(AirflowTarget {
                env_id: id,
                base_url,
                token,
            });
        }
        let sealed = persistence::environments::sealed_secrets(&self.db.pool, id)
            .await
            .store("read an environment's secrets")?
            .ok_or_else(|| {
                ServiceError::Unavailable(format!("environment {env:?} has no secrets"))
            })?;
        let secrets = self.master_key.open(id, &sealed)?;
        let resp = self
            .http
            .post(format!("{base_url}/auth/token"))
            .json(
                &serde_json::json!({ "username": ADMIN_USER, "password": secrets.admin_password }),
            )
            .timeout(LOGIN_WITHIN)
            .send()
            .await
            .map_err(|e| unanswered(env, &e, LOGIN_WITHIN))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let token = body["access_token"]
            .as_str()
            .filter(|_| status.is_success())
            .ok_or_else(|| {
                ServiceError::Unavailable(format!(
                    "environment {env:?} refused the platform's login ({status})"
                ))
            })?
            .to_owned();
        self.airflow_tokens.put(id, token.clone());
        Ok(AirflowTarget {
            env_id: id,
            base_url,
            token,
        })
    }

    /// The environment's DAG import errors, as its Airflow reports them: file and message.
    pub async fn import_errors(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
    ) -> Result<Vec<ImportError>, ServiceError> {
        for attempt in 0..2 {
            let target = self.airflow_target(actor, tenant, env, false).await?;
            let resp = self
                .http
                .get(format!("{}/api/v2/importErrors", target.base_url))
                .query(&[("limit", "1000"), ("order_by", "filename")])
                .bearer_auth(&target.token)
                .timeout(ANSWER_WITHIN)
                .send()
                .await
                .map_err(|e| unanswered(env, &e, ANSWER_WITHIN))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                self.forget_airflow_token(target.env_id);
                continue;
            }
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
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
