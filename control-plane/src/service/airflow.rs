//! Reaching an environment's own Airflow REST API through the control plane (MWAA's
//! InvokeRestApi): Hangar's tokens decide who may call it at all, and the control plane logs in
//! as the environment's platform user whose Airflow role matches the caller's Hangar role
//! (`hangar_tenants::airflow_users`), so Airflow's own role check decides what the call may do.
//! Those users' passwords never leave the platform.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hangar_tenants::airflow_users::AirflowRole;
use hangar_tenants::api::{webserver_path, ImportError, Role};
use hangar_tenants::Phase;
use uuid::Uuid;

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

/// The HTTP client the control plane calls environments' Airflow with. It follows no
/// redirect: an environment runs its tenant's code, and a redirect it answers (to another
/// host, a cloud metadata address, a service of the platform) must not make the control plane
/// call there with or without the platform's login. Redirects go back to the caller instead,
/// and only when they stay inside the environment (see the proxy).
#[allow(
    clippy::expect_used,
    reason = "as reqwest::Client::new(): fails only when no TLS backend can start"
)]
pub fn airflow_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// The environment's Airflow address as its cell reported it (`endpoints["api"]`), if the
/// platform may call it. The control plane calls that address with the platform's login to
/// the environment, so a report (from an agent, or from whoever holds a cell token) must not
/// be able to point it anywhere else: another machine, a cloud metadata service, a service of
/// the platform. Process cells run on the control plane's machine today and bind environments
/// to the loopback, so the only address accepted is `http://127.0.0.1:<port>` or
/// `http://[::1]:<port>` with the environment's own path (`webserver_path`, which its
/// api-server serves under). Cells elsewhere will be reached over a connection their agent
/// opens (DESIGN.md), and this check will become that connection's.
pub fn checked_endpoint(tenant: &str, env: &str, reported: &str) -> Option<url::Url> {
    let url = url::Url::parse(reported).ok()?;
    let loopback = match url.host()? {
        url::Host::Ipv4(ip) => ip == Ipv4Addr::LOCALHOST,
        url::Host::Ipv6(ip) => ip == Ipv6Addr::LOCALHOST,
        url::Host::Domain(_) => false,
    };
    let own_path =
        url.path().trim_end_matches('/') == webserver_path(tenant, env).trim_end_matches('/');
    let plain = url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    (url.scheme() == "http" && loopback && url.port().is_some() && own_path && plain).then_some(url)
}

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
    /// The environment's checked endpoint (`checked_endpoint`), without a final `/`.
    pub base_url: String,
    pub token: String,
}

impl Services {
    /// The HTTP client the control plane calls environments with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

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
        let id = row.id;
        let e = self.environment_out(row)?;
        let reported = e
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
        let Some(endpoint) = checked_endpoint(&t.name, env, &reported) else {
            tracing::warn!(
                tenant = %t.name,
                env,
                endpoint = %reported,
                "refused to forward to an environment's reported Airflow address"
            );
            return Err(ServiceError::Unavailable(format!(
                "environment {env:?} reported an Airflow address the platform does not forward to (only its cell's own loopback address is)"
            )));
        };
        let base_url = endpoint.as_str().trim_end_matches('/').to_owned();
        if let Some(token) = self.airflow_tokens.get(id, role) {
            return Ok(AirflowTarget {
                env_id: id,
                role,
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
            .json(&serde_json::json!({
                "username": role.user(),
                "password": role.password(&secrets),
            }))
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
        self.airflow_tokens.put(id, role, token.clone());
        Ok(AirflowTarget {
            env_id: id,
            role,
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
            let target = self.airflow_target(actor, tenant, env).await?;
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
                self.forget_airflow_token(&target);
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

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("http://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow")]
    #[case("http://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow/")]
    #[case("http://[::1]:20001/v1/tenants/data/environments/etl/airflow")]
    fn forwards_to_the_cells_loopback_with_the_environments_path(#[case] reported: &str) {
        assert!(
            checked_endpoint("data", "etl", reported).is_some(),
            "{reported}"
        );
    }

    #[rstest]
    #[case("http://10.0.0.7:20001/v1/tenants/data/environments/etl/airflow")]
    #[case("http://169.254.169.254:80/v1/tenants/data/environments/etl/airflow")]
    #[case("http://localhost:20001/v1/tenants/data/environments/etl/airflow")]
    #[case("http://127.0.0.2:20001/v1/tenants/data/environments/etl/airflow")]
    #[case("http://0.0.0.0:20001/v1/tenants/data/environments/etl/airflow")]
    #[case("https://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow")]
    #[case("http://127.0.0.1/v1/tenants/data/environments/etl/airflow")]
    #[case("http://127.0.0.1:20001")]
    #[case("http://127.0.0.1:20001/v1/tenants/data/environments/ml/airflow")]
    #[case("http://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow/../../ml/airflow")]
    #[case("http://user:pw@127.0.0.1:20001/v1/tenants/data/environments/etl/airflow")]
    #[case("http://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow?x=1")]
    #[case("http://127.0.0.1.evil.test:20001/v1/tenants/data/environments/etl/airflow")]
    #[case("not a url")]
    fn refuses_any_other_address(#[case] reported: &str) {
        assert!(
            checked_endpoint("data", "etl", reported).is_none(),
            "{reported}"
        );
    }
}
