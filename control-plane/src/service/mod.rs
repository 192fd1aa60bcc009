//! The control plane's service layer: everything the API and the portal do, without HTTP.
//! Authorisation and auditing happen here, so every surface gets the same rules.

pub mod access_keys;
pub mod airflow;
pub mod airflow_call;
pub mod cells;
pub mod cli;
pub mod dags;
pub mod environments;
pub mod logs;
pub mod portal;
pub mod tenants;
pub mod usage;
pub mod warm;
pub mod web_login;

use std::time::Duration;

use hangar_tenants::api::Role;
use hangar_tenants::{FieldErrors, Platform, TenantName};
use tokio::sync::watch;
use uuid::Uuid;

use crate::auth::{self, Actor, Principal, PrincipalCache, TokenKind};
use crate::persistence::{self, Db};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(#[from] FieldErrors),
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    /// A credential other than the bearer token (a web login token, a session cookie) was
    /// refused; `field` names where it was sent.
    #[error("{message}")]
    BadCredential {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Forbidden(String),
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    /// The environment cannot serve this now (not running yet, not answering).
    #[error("{0}")]
    Unavailable(String),
    /// The environment answered something the platform does not pass on (larger than the
    /// proxy's bound, a redirect out of the environment).
    #[error("{0}")]
    BadGateway(String),
    #[error("{message}")]
    Conflict {
        field: Option<&'static str>,
        message: String,
    },
    #[error("the environment is at revision {current}, not {expected}")]
    StaleRevision { expected: i64, current: i64 },
    #[error("failed to {action}: {source}")]
    Store {
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error("failed to {action}: {message}")]
    Corrupt {
        action: &'static str,
        message: String,
    },
}

impl From<hangar_tenants::FieldError> for ServiceError {
    fn from(e: hangar_tenants::FieldError) -> Self {
        Self::Invalid(e.into())
    }
}

impl ServiceError {
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            name: name.into(),
        }
    }
}

/// An environment's phase as stored (a stored phase Hangar does not know is a corrupt row).
pub(crate) fn stored_phase(phase: &str) -> Result<hangar_tenants::Phase, ServiceError> {
    phase.parse().map_err(
        |e: hangar_tenants::phase::UnknownPhase| ServiceError::Corrupt {
            action: "read an environment's phase",
            message: e.to_string(),
        },
    )
}

/// Names the action a failed query was part of.
pub trait StoreContext<T> {
    fn store(self, action: &'static str) -> Result<T, ServiceError>;
}

impl<T> StoreContext<T> for Result<T, sqlx::Error> {
    fn store(self, action: &'static str) -> Result<T, ServiceError> {
        self.map_err(|source| ServiceError::Store { action, source })
    }
}

/// A tenant the caller may act on.
#[derive(Debug, Clone)]
pub struct TenantRef {
    pub id: Uuid,
    pub name: String,
}

/// The service layer's dependencies.
#[derive(Debug, Clone)]
pub struct Services {
    pub db: Db,
    pub platform: Platform,
    admin_token_hash: Vec<u8>,
    /// A cell not heard from for this long gets no new environments, and its environments
    /// read as its silence makes them ([`hangar_tenants::phase_as_read`]).
    pub cell_ttl: Duration,
    /// Bumped whenever any cell's assignments change (Postgres NOTIFY), for long polls.
    pub changes: watch::Receiver<u64>,
    pub(crate) principals: std::sync::Arc<PrincipalCache>,
    pub(crate) master_key: crate::secrets::MasterKey,
    pub(crate) airflow_tokens: std::sync::Arc<airflow::AirflowTokens>,
    /// The cells' tunnels, the only way to their environments' Airflow.
    pub tunnels: std::sync::Arc<crate::tunnel::Tunnels>,
    /// The way to the cells' tunnels other replicas hold.
    pub relay: crate::relay::Relay,
    /// The platform bucket, if configured.
    pub bucket: Option<hangar_data_plane::bucket::Bucket>,
    /// The hash of the token that may read `/metrics` (besides the platform admin's).
    pub metrics_token_hash: Option<Vec<u8>>,
    /// When the live log tail was last pruned (Unix seconds).
    pub(crate) log_pruned_at: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// Where each environment's UI has an origin of its own (`HANGAR_UI_DOMAIN`).
    pub ui_domain: Option<crate::ui_domain::UiDomain>,
    /// The largest answer of an environment's Airflow the proxy passes on.
    pub proxy_max_response: u64,
    /// How long one minute of an environment's `hibernate_after_idle_minutes` lasts (a minute;
    /// tests shorten it).
    pub idle_minute: Duration,
}

/// How long a token's `last_used_at` may lag, to spare a write on every request.
const TOKEN_TOUCH_INTERVAL: chrono::Duration = chrono::Duration::seconds(60);

impl Services {
    pub fn new(
        db: Db,
        platform: Platform,
        admin_token: &str,
        cell_ttl: Duration,
        changes: watch::Receiver<u64>,
        token_cache_ttl: Duration,
        master_key: crate::secrets::MasterKey,
    ) -> Self {
        Self {
            db,
            platform,
            admin_token_hash: auth::hash(admin_token),
            cell_ttl,
            changes,
            principals: std::sync::Arc::new(PrincipalCache::new(token_cache_ttl, 100_000)),
            relay: crate::relay::Relay::new(&master_key),
            master_key,
            airflow_tokens: std::sync::Arc::default(),
            tunnels: std::sync::Arc::default(),
            bucket: None,
            metrics_token_hash: None,
            log_pruned_at: std::sync::Arc::default(),
            ui_domain: None,
            proxy_max_response: airflow::MAX_RESPONSE_BYTES,
            idle_minute: Duration::from_secs(60),
        }
    }

    /// The principal of a token known by its kind and hash (a bearer token, or the token a web
    /// session was opened with).
    pub async fn principal_of(
        &self,
        kind: TokenKind,
        hash: &[u8],
    ) -> Result<Principal, ServiceError> {
        if let Some(p) = self.principals.get(hash) {
            return Ok(p);
        }
        let principal = self.resolve(kind, hash).await?;
        if !matches!(principal, Principal::PlatformAdmin) {
            self.principals.put(hash.to_vec(), principal.clone());
        }
        Ok(principal)
    }

    /// Resolves a token's hash against the database (or the admin token's hash).
    async fn resolve(&self, kind: TokenKind, hash: &[u8]) -> Result<Principal, ServiceError> {
        match kind {
            TokenKind::Tenant => {
                let holder = persistence::tokens::holder(&self.db.pool, hash)
                    .await
                    .store("look up a token")?
                    .ok_or(ServiceError::Unauthenticated)?;
                let stale = holder
                    .last_used_at
                    .is_none_or(|t| chrono::Utc::now() - t > TOKEN_TOUCH_INTERVAL);
                if stale {
                    persistence::tokens::touch(&self.db.pool, holder.token_id)
                        .await
                        .store("record a token's use")?;
                }
                let role = Role::parse(&holder.role).ok_or_else(|| ServiceError::Corrupt {
                    action: "read a token's role",
                    message: holder.role.clone(),
                })?;
                Ok(Principal::Tenant {
                    token_id: holder.token_id,
                    tenant_id: holder.tenant_id,
                    tenant: holder.tenant_name,
                    role,
                })
            }
            TokenKind::Cell => {
                let cell = persistence::cells::by_token(&self.db.pool, hash)
                    .await
                    .store("look up a cell token")?
                    .ok_or(ServiceError::Unauthenticated)?;
                Ok(Principal::Cell {
                    id: cell.id,
                    name: cell.name,
                })
            }
            TokenKind::AccessKey => {
                let id = std::str::from_utf8(hash).map_err(|_| ServiceError::Unauthenticated)?;
                let holder = self
                    .access_key_holder(id)
                    .await?
                    .ok_or(ServiceError::Unauthenticated)?;
                Ok(Principal::Tenant {
                    token_id: holder.id,
                    tenant_id: holder.tenant_id,
                    tenant: holder.tenant,
                    role: holder.role,
                })
            }
            TokenKind::Other if auth::same_hash(hash, &self.admin_token_hash) => {
                Ok(Principal::PlatformAdmin)
            }
            TokenKind::Other => Err(ServiceError::Unauthenticated),
        }
    }

    /// The tenant named in a request, if the caller may act on it with at least role `need`.
    /// Another tenant's resources answer "not found", never "forbidden", so their existence
    /// does not leak.
    pub async fn authorize_tenant(
        &self,
        actor: &Actor,
        tenant: &str,
        need: Role,
    ) -> Result<TenantRef, ServiceError> {
        if TenantName::parse(tenant).is_err() {
            return Err(ServiceError::not_found("tenant", tenant));
        }
        match &actor.principal {
            Principal::PlatformAdmin => {
                let row = persistence::tenants::by_name(&self.db.pool, tenant)
                    .await
                    .store("look up a tenant")?
                    .ok_or_else(|| ServiceError::not_found("tenant", tenant))?;
                Ok(TenantRef {
                    id: row.id,
                    name: row.name,
                })
            }
            Principal::Tenant {
                tenant_id,
                tenant: own,
                role,
                ..
            } => {
                if own != tenant {
                    return Err(ServiceError::not_found("tenant", tenant));
                }
                if *role < need {
                    return Err(ServiceError::Forbidden(format!(
                        "a {} token may not do this; it needs the {} role",
                        role.as_str(),
                        need.as_str()
                    )));
                }
                Ok(TenantRef {
                    id: *tenant_id,
                    name: own.clone(),
                })
            }
            Principal::Cell { .. } => Err(ServiceError::Forbidden(
                "cell tokens reach only the /v1/cells API".to_owned(),
            )),
        }
    }

    /// The tenant's environment of that name that is not deleted.
    pub(crate) async fn live_environment(
        &self,
        t: &TenantRef,
        name: &str,
    ) -> Result<persistence::environments::EnvRow, ServiceError> {
        persistence::environments::by_name(&self.db.pool, t.id, name)
            .await
            .store("read an environment")?
            .filter(|r| r.phase != hangar_tenants::Phase::Deleted.as_str())
            .ok_or_else(|| ServiceError::not_found("environment", name))
    }

    /// Records in the audit log, in a transaction of its own, something done in the tenant's
    /// name that changes no row of its own (an upload, a login, a CLI command).
    pub(crate) async fn audit(
        &self,
        actor: &Actor,
        t: &TenantRef,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), ServiceError> {
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        persistence::audit::insert(
            &mut tx,
            persistence::audit::NewAudit {
                tenant_id: Some(t.id),
                actor: &actor.principal.actor(),
                action,
                target,
                request_id: actor.request_id.as_deref(),
                details,
            },
        )
        .await
        .store("write the audit log")?;
        tx.commit().await.store("commit an audit entry")
    }

    /// Whether the bearer token `token` may read `/metrics`: the metrics token or the platform
    /// admin's. Tenants' and cells' tokens may not (it names every tenant's environments).
    pub async fn authorize_scrape(&self, token: Option<&str>) -> Result<(), ServiceError> {
        let token = token.ok_or(ServiceError::Unauthenticated)?;
        let hash = auth::hash(token);
        if self
            .metrics_token_hash
            .as_deref()
            .is_some_and(|m| auth::same_hash(&hash, m))
        {
            return Ok(());
        }
        match self.principal_of(TokenKind::of(token), &hash).await? {
            Principal::PlatformAdmin => Ok(()),
            _ => Err(ServiceError::Forbidden(
                "/metrics names every tenant's environments: it takes the metrics token (HANGAR_METRICS_TOKEN) or the platform admin's".to_owned(),
            )),
        }
    }

    /// An environment's idle window from its stored spec: `hibernate_after_idle_minutes` of
    /// [`Services::idle_minute`]; `None` when it never hibernates by itself.
    pub(crate) fn idle_window(&self, spec: &serde_json::Value) -> Option<chrono::TimeDelta> {
        let minutes = spec
            .get("hibernate_after_idle_minutes")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(u64::from(
                hangar_tenants::DEFAULT_HIBERNATE_AFTER_IDLE_MINUTES,
            ));
        let window = self.idle_minute.checked_mul(u32::try_from(minutes).ok()?)?;
        chrono::TimeDelta::from_std(window)
            .ok()
            .filter(|w| !w.is_zero())
    }

    pub fn require_platform_admin(&self, actor: &Actor) -> Result<(), ServiceError> {
        match actor.principal {
            Principal::PlatformAdmin => Ok(()),
            _ => Err(ServiceError::Forbidden(
                "only the platform admin may do this".to_owned(),
            )),
        }
    }
}
