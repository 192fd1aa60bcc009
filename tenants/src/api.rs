//! JSON bodies of Hangar's `/v1` API, shared by the server, the typed client, the CLI, the
//! agent and the tests so that both sides of every call agree on one definition.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::phase::{ObservedState, Phase};
use crate::spec::{EnvironmentClass, EnvironmentSpec, Executor};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(
        pattern = "^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$",
        min_length = 1,
        max_length = 40
    )]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub display_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

/// What a tenant token may do: `viewer` reads, `editor` also changes environments, `admin`
/// also manages the tenant's tokens and reads its audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// 1 to 64 characters, no control characters, not only spaces (stored trimmed).
    #[schema(
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        min_length = 1,
        max_length = 64
    )]
    pub name: String,
    pub role: Role,
}

/// A new token. `token` is shown here once and stored only as a hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub token: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// Asks for an access key (the MWAA-compatible API's AWS Signature V4 credentials).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccessKey {
    /// 1 to 64 characters, no control characters, not only spaces (stored trimmed).
    #[schema(
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        min_length = 1,
        max_length = 64
    )]
    pub name: String,
    pub role: Role,
}

/// A new access key. `secret_access_key` is shown here once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessKeyCreated {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessKeyInfo {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub access_key_id: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessKeyList {
    pub access_keys: Vec<AccessKeyInfo>,
}

/// A new environment. Everything but `name` has a default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    #[schema(
        pattern = "^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$",
        min_length = 1,
        max_length = 40
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub airflow_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Executor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_class: Option<EnvironmentClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 100)]
    pub min_workers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_workers: Option<u32>,
    /// Share of the cell's worker pool when it is oversubscribed, relative to the other
    /// environments' (1–100, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub worker_weight: Option<u32>,
    /// Minutes with nothing queued, running or deferred, no use of its Airflow through Hangar
    /// and no DAG run due, after which the environment hibernates (0 = never; default 60,
    /// at most 10080). It wakes on use and ahead of its next scheduled DAG run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 10080)]
    pub hibernate_after_idle_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 5)]
    pub schedulers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub airflow_config_overrides: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// A partial update: absent fields keep their value, maps given are replaced whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub airflow_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Executor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_class: Option<EnvironmentClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 100)]
    pub min_workers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_workers: Option<u32>,
    /// Share of the cell's worker pool when it is oversubscribed, relative to the other
    /// environments' (1–100, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub worker_weight: Option<u32>,
    /// Minutes with nothing queued, running or deferred, no use of its Airflow through Hangar
    /// and no DAG run due, after which the environment hibernates (0 = never; default 60,
    /// at most 10080). It wakes on use and ahead of its next scheduled DAG run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 10080)]
    pub hibernate_after_idle_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 5)]
    pub schedulers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub airflow_config_overrides: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    /// Increases by one with every accepted change of the spec; the ETag of the environment.
    pub revision: i64,
    pub phase: Phase,
    /// Why the environment is in its phase, when that needs saying.
    pub status_message: Option<String>,
    pub spec: EnvironmentSpec,
    /// The data-plane cell running the environment; `None` until one with room is registered.
    pub cell: Option<String>,
    /// Whether its cell keeps it apart from other tenants' environments and from the platform
    /// (its own Unix user, cgroup limits, Landlock), as the cell's agent reported when it
    /// registered; `false` also when the agent reported nothing. `None` while it has no cell.
    /// An environment on a cell that is not isolated is fit only for a tenant the platform
    /// trusts.
    #[serde(default)]
    pub isolated: Option<bool>,
    /// The newest state reported by the cell's agent.
    pub observed: Option<ObservedState>,
    /// The environment's Airflow UI and REST API through Hangar: its own origin
    /// (`http(s)://{env}--{tenant}.{HANGAR_UI_DOMAIN}/`) when the platform gives environments
    /// one, else its path on this API (`…/environments/{env}/airflow/`). The REST API takes a
    /// Hangar token (its role is the Airflow role the call acts with), the UI in a browser a
    /// session from `POST …/web-login-token`.
    pub webserver_url: Option<String>,
    /// Where the environment's files are in the platform bucket, for the cloud's own tools
    /// (`aws s3 cp`, `gcloud storage cp`, `az storage blob upload`); `None` without a bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<EnvironmentBucket>,
    /// When its Airflow (API, UI or CLI) was last used through Hangar, to within seconds: a use
    /// restarts its idle window (`spec.hibernate_after_idle_minutes`) and wakes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentList {
    pub environments: Vec<Environment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// `platform-admin`, `token:<id>` or `cell:<name>`.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Process,
    Kubernetes,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCell {
    #[schema(
        pattern = "^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$",
        min_length = 1,
        max_length = 40
    )]
    pub name: String,
    pub runtime: Runtime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CellCapacity {
    /// How many environments the cell accepts.
    pub max_environments: u32,
    /// Worker slots of the shared pool.
    pub worker_slots: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Cell {
    pub id: Uuid,
    pub name: String,
    pub runtime: Runtime,
    pub capacity: Option<CellCapacity>,
    pub agent_version: Option<String>,
    pub environments: i64,
    /// The shared worker pool as its environments last reported it.
    pub pool: CellPool,
    pub registered_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// How the cell isolates its environments, as its agent reported when it last registered;
    /// absent when it reported nothing (not isolated).
    #[serde(default)]
    pub isolation: Option<CellIsolation>,
    /// Whether the cell's agent holds its tunnel open to the control-plane replica that
    /// answered: environments' Airflow is reached only through it (docs/security.md).
    #[serde(default)]
    pub tunnel_connected: bool,
    /// Prepared environments the cell keeps for new environments to claim, as its agent asked.
    #[serde(default)]
    pub warm_pool: u32,
    /// Of those, how many are up, ready to be claimed.
    #[serde(default)]
    pub warm_ready: u32,
    /// Panics of its agent's background loops (an environment's reconciler, the log shipper,
    /// the Airflow CLI loop, the tunnel) since the agent started, as it last registered: each
    /// was logged and the loop started again. Also `hangar_cell_agent_panics_total`.
    #[serde(default)]
    pub agent_panics: u64,
}

/// A cell's shared worker pool.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CellPool {
    /// Worker slots of the pool (`capacity.worker_slots`; 0 before the agent registered).
    pub worker_slots: u32,
    /// Slots held by workers, taking tasks or draining.
    pub workers: u32,
    /// `workers / worker_slots` (0 when the pool has no slot).
    pub utilization: f64,
}

impl CellPool {
    pub fn new(worker_slots: u32, workers: u32) -> Self {
        let utilization = if worker_slots == 0 {
            0.0
        } else {
            f64::from(workers) / f64::from(worker_slots)
        };
        Self {
            worker_slots,
            workers,
            utilization,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CellList {
    pub cells: Vec<Cell>,
}

/// A new cell and the token its agent registers with (shown once).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CellCreated {
    pub cell: Cell,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterCell {
    pub capacity: CellCapacity,
    pub agent_version: String,
    /// How the cell isolates its environments, as its agent found the machine (an agent that
    /// sends none is shown as not isolated).
    #[serde(default)]
    pub isolation: Option<CellIsolation>,
    /// How many prepared environments the cell keeps for new environments to claim (at most
    /// `crate::warm::MAX_WARM_POOL`).
    #[serde(default)]
    pub warm_pool: u32,
    /// Panics of the agent's background loops since it started (each logged and started
    /// again). The agent registers again after each, so the count is never far behind.
    #[serde(default)]
    pub agent_panics: u64,
}

/// How a cell keeps its environments from each other and from the platform. Tenants run
/// hostile code: a cell that is not `isolated` is fit only for one trusted tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CellIsolation {
    /// Every part of the isolation below is in force.
    pub isolated: bool,
    /// Every environment runs as its own Unix user (false: the agent runs them all as itself,
    /// `HANGAR_INSECURE_SINGLE_USER=true`).
    pub users: bool,
    /// Per-environment memory, CPU and process limits: `v1` or `v2` (the cgroup version in
    /// use); absent when they cannot be enforced.
    pub cgroups: Option<String>,
    /// The Landlock ABI the environments' processes are confined with; absent when the kernel
    /// has none.
    pub landlock: Option<u32>,
    /// Every environment has a Kubernetes namespace of its own (Pod Security `restricted`,
    /// default-deny NetworkPolicies, a ResourceQuota, no service-account token in its pods):
    /// the kubernetes runtime's isolation, where `users`, `cgroups` and `landlock` (the process
    /// runtime's) do not apply.
    #[serde(default)]
    pub namespaces: bool,
    /// What is not in force, and why, one sentence each.
    #[serde(default)]
    pub problems: Vec<String>,
}

/// One environment placed on a cell, as its agent must make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Assignment {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub revision: i64,
    /// The environment is to be removed: stop everything and report `deleted`.
    pub delete: bool,
    /// The environment is to hibernate: stop all its processes once no DAG run is queued or
    /// running, keep its data, and start it again when this is cleared.
    #[serde(default)]
    pub hibernate: bool,
    /// A prepared environment no tenant has claimed yet (`crate::warm`): it syncs no bucket
    /// and ships no logs.
    #[serde(default)]
    pub warm: bool,
    /// The path its Airflow is served under, its `[api] base_url`; empty for
    /// [`webserver_path`] of its tenant and name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub airflow_path: String,
    pub spec: EnvironmentSpec,
    /// The environment's generated secrets; `None` only for environments older than them.
    pub secrets: Option<EnvironmentSecrets>,
}

/// The environments of a cell that changed after `since`; pass `cursor` as the next `since`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Assignments {
    pub cursor: i64,
    pub environments: Vec<Assignment>,
}

/// An error answer (RFC 9457 `application/problem+json`). `errors` names each offending field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<crate::error::FieldError>,
}

/// The secrets the platform generates for an environment. They never reach tenants; the
/// environment's cell receives them with its assignment so any agent can re-create it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentSecrets {
    /// Airflow `[core] fernet_key` (urlsafe base64 of 32 random bytes).
    pub fernet_key: String,
    /// Airflow `[api_auth] jwt_secret`.
    pub jwt_secret: String,
    /// Airflow `[api] secret_key`.
    pub api_secret_key: String,
    /// Password of the environment's metadata database role.
    pub db_password: String,
    /// Password of the environment's broker (Redis ACL) user.
    pub broker_password: String,
    /// Password of the environment's internal Airflow admin user (used by the platform only).
    pub admin_password: String,
}

impl std::fmt::Debug for EnvironmentSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvironmentSecrets { .. }")
    }
}

/// Asks for a pre-signed upload URL for one DAG file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUploadUrl {
    /// The file's path under the environment's `dags/` prefix, e.g. `team/etl.py`.
    #[schema(
        pattern = r"^(?:[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]{0,199}|\.[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]{0,198}|\.\.[^/\\\x00-\x1f\x7f-\x9f]{1,198})(?:/(?:[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]{0,199}|\.[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]{0,198}|\.\.[^/\\\x00-\x1f\x7f-\x9f]{1,198}))*$",
        min_length = 1,
        max_length = 1024
    )]
    pub path: String,
}

/// A URL that uploads one DAG file straight to the platform bucket (S3, GCS, Azure) without
/// Hangar's credentials: `PUT` the file's bytes to it before `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UploadUrl {
    pub url: String,
    pub method: String,
    pub path: String,
    pub expires_at: DateTime<Utc>,
}

/// A DAG file the environment's Airflow could not import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportError {
    /// The file, relative to the DAG folder (as in the bucket's `dags/` prefix).
    pub file: String,
    /// Airflow's message (the traceback's end says why).
    pub message: String,
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportErrorList {
    pub import_errors: Vec<ImportError>,
}

/// The bucket URLs of an environment's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentBucket {
    /// The `dags/` prefix: what is written there is synced into the environment in seconds.
    pub dags: String,
    /// The `plugins/` prefix.
    pub plugins: String,
    /// The `requirements.txt` object.
    pub requirements: String,
}

impl Assignment {
    /// The path its Airflow is served under (see `airflow_path`).
    pub fn airflow_path(&self) -> String {
        if self.airflow_path.is_empty() {
            webserver_path(&self.tenant, &self.name)
        } else {
            self.airflow_path.clone()
        }
    }
}

/// The path under which Hangar serves an environment's Airflow (UI and REST API); also the
/// environment's own `[api] base_url`, so the UI's links stay inside it.
pub fn webserver_path(tenant: &str, env: &str) -> String {
    format!("/v1/tenants/{tenant}/environments/{env}/airflow/")
}

/// A short-lived, single-use token that opens a browser session on an environment's Airflow UI
/// (MWAA's CreateWebLoginToken). Open `login_url` in the browser within `expires_at`, once; the
/// session it starts acts with the rights of the token that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebLoginToken {
    pub web_token: String,
    /// Where the browser exchanges the token for a session cookie and is sent on to the UI: a
    /// URL on the environment's own UI origin when it has one, else a path on this API.
    pub login_url: String,
    pub webserver_url: String,
    pub expires_at: DateTime<Utc>,
}

/// A one-time sign-in link to the portal (`hangar portal-login`): opening it once within
/// `expires_at` starts a portal session with the rights of the token that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortalLoginLink {
    /// The link's path on this API's origin (`/login/link?token=…`).
    pub login_path: String,
    pub expires_at: DateTime<Utc>,
}

/// A file in an environment's `dags/` prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DagFile {
    pub path: String,
    pub size: u64,
    /// Given when the file was just written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DagFileList {
    pub files: Vec<DagFile>,
}

/// An Airflow CLI command to run in the environment (the role of MWAA's CLI token).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunAirflowCli {
    /// The arguments after `airflow`, one per item (no shell), e.g. `["dags", "list"]`; only
    /// allow-listed commands run.
    #[schema(min_items = 1)]
    pub args: Vec<String>,
    /// Seconds the command may run (1–300, default 60); it is killed after that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 300)]
    pub timeout_seconds: Option<u32>,
}

/// What an Airflow CLI command gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AirflowCliResult {
    pub stdout: String,
    pub stderr: String,
    /// The exit code; null when the command was killed or could not be run.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Whether stdout or stderr was cut at 1 MiB.
    pub truncated: bool,
    /// How long the command ran, in milliseconds.
    pub duration_ms: u64,
}

/// A command an agent is to run in one of its cell's environments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CliCall {
    pub id: Uuid,
    pub environment_id: Uuid,
    pub args: Vec<String>,
    pub timeout_seconds: u32,
}

/// The commands waiting for a cell's agent (each handed out once).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CliCalls {
    pub calls: Vec<CliCall>,
}

/// How severe a log line is, from the line itself (`WARNING`, `[error   ]`, `INFO/MainProcess`…);
/// a line without one (a traceback's frames) has the level of the line before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }

    /// A level by its name as log lines spell it (`warn`, `fatal` and any case included).
    pub fn parse(s: &str) -> Option<LogLevel> {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warning" | "warn" => Some(LogLevel::Warning),
            "error" => Some(LogLevel::Error),
            "critical" | "fatal" => Some(LogLevel::Critical),
            _ => None,
        }
    }
}

/// One line of an environment component's log (api-server, scheduler, dag-processor,
/// triggerer, worker-N), as the data plane captured it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// The line's own time when it carries one, else the time it was captured.
    pub ts: DateTime<Utc>,
    pub component: String,
    pub level: LogLevel,
    pub message: String,
    /// Where the line starts in the component's log file: with `component`, it names the line
    /// (lines seen twice, live and from the bucket, are shown once).
    pub offset: u64,
}

/// A page of component log lines, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Whether more lines matched than `limit`: without `since` the oldest were left out, with
    /// `since` the newest.
    pub truncated: bool,
}

/// Lines an agent captured, sent as they come so followers see them at once (cell token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogBatch {
    pub environments: Vec<EnvironmentLogLines>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentLogLines {
    pub environment_id: Uuid,
    pub lines: Vec<LogLine>,
}
