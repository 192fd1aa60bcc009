//! The desired state of an environment (`EnvironmentSpec`) and its validation. A spec is only
//! ever built through [`EnvironmentSpec::create`] or [`EnvironmentSpec::update`], so every stored
//! spec has passed the same checks, and every refusal names its field.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{CreateEnvironment, UpdateEnvironment};
use crate::error::FieldErrors;
use crate::names::EnvName;

/// The Airflow version an environment gets when its request names none.
pub const DEFAULT_AIRFLOW_VERSION: &str = "3.3.2";

const MAX_WORKERS_LIMIT: u32 = 100;
const MAX_SCHEDULERS: u32 = 5;
const MAX_MAP_ENTRIES: usize = 200;
const MAX_VALUE_LEN: usize = 4096;
const MAX_REQUIREMENTS_LEN: usize = 64 * 1024;
const MAX_TAGS: usize = 50;

/// What the platform offers, as configured by its operator: the Airflow versions on its
/// allow-list (runtimes the data plane knows how to build).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub airflow_versions: Vec<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Self {
            airflow_versions: vec![DEFAULT_AIRFLOW_VERSION.to_owned()],
        }
    }
}

/// An Airflow version on the platform's allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "3.3.2")]
pub struct AirflowVersion(String);

impl AirflowVersion {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AirflowVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who runs an environment's tasks. On one machine, `hangar` runs each task as a process of
/// its own from the cell's pool of task slots (shared by every environment), and any other
/// value runs Celery workers; on Kubernetes, `kubernetes` runs each task in a pod of its own
/// (KubernetesExecutor) and `celery_kubernetes` has both (Airflow 3's multiple executors, Celery
/// the default: a task asks for a pod with `executor="KubernetesExecutor"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    #[default]
    Celery,
    Kubernetes,
    #[serde(rename = "celery_kubernetes")]
    CeleryKubernetes,
    /// The cell's shared pool of task slots (process runtime only).
    Hangar,
}

/// Environment sizes with MWAA's meaning (`mw1.micro` … `mw1.xlarge`): how many tasks one
/// worker runs at once, and how much CPU and memory a worker gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentClass {
    Micro,
    #[default]
    Small,
    Medium,
    Large,
    Xlarge,
}

impl EnvironmentClass {
    /// Celery `worker_concurrency`: tasks one worker runs at once.
    pub fn worker_concurrency(self) -> u32 {
        match self {
            Self::Micro => 3,
            Self::Small => 5,
            Self::Medium => 10,
            Self::Large => 20,
            Self::Xlarge => 40,
        }
    }

    /// CPU of one worker, in millicores.
    pub fn worker_cpu_millis(self) -> u32 {
        match self {
            Self::Micro => 500,
            Self::Small => 1000,
            Self::Medium => 2000,
            Self::Large => 4000,
            Self::Xlarge => 8000,
        }
    }

    /// Memory of one worker, in MiB.
    pub fn worker_memory_mib(self) -> u32 {
        match self {
            Self::Micro => 1536,
            Self::Small => 2048,
            Self::Medium => 4096,
            Self::Large => 8192,
            Self::Xlarge => 24576,
        }
    }
}

/// Pool weight of an environment that sets none.
pub const DEFAULT_WORKER_WEIGHT: u32 = 1;
/// Highest pool weight: one environment gets at most 100 times another's contended share.
pub const MAX_WORKER_WEIGHT: u32 = 100;

fn default_worker_weight() -> u32 {
    DEFAULT_WORKER_WEIGHT
}

/// Minutes an environment stays up with nothing to do before it hibernates, unless set.
pub const DEFAULT_HIBERNATE_AFTER_IDLE_MINUTES: u32 = 60;
/// The longest idle window: a week.
pub const MAX_HIBERNATE_AFTER_IDLE_MINUTES: u32 = 7 * 24 * 60;

fn default_hibernate_after_idle_minutes() -> u32 {
    DEFAULT_HIBERNATE_AFTER_IDLE_MINUTES
}

/// The validated desired state of one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentSpec {
    pub name: EnvName,
    pub airflow_version: AirflowVersion,
    pub executor: Executor,
    pub environment_class: EnvironmentClass,
    /// Workers kept running when nothing is queued; 0 lets the environment scale to zero.
    pub min_workers: u32,
    pub max_workers: u32,
    /// Share of the cell's worker pool, relative to the other environments', when the pool is
    /// oversubscribed (after every environment's `min_workers`).
    #[serde(default = "default_worker_weight")]
    pub worker_weight: u32,
    /// Minutes with nothing queued, running or deferred, no use through Hangar and no DAG run
    /// due after which the environment hibernates (0: never).
    #[serde(default = "default_hibernate_after_idle_minutes")]
    pub hibernate_after_idle_minutes: u32,
    pub schedulers: u32,
    /// Airflow configuration as `section.key` → value; keys the platform owns are refused.
    pub airflow_config_overrides: BTreeMap<String, String>,
    pub env_vars: BTreeMap<String, String>,
    /// A pip requirements file, installed into the environment's own Python runtime.
    pub requirements: String,
    pub tags: BTreeMap<String, String>,
}

impl EnvironmentSpec {
    /// Validates a create request against the platform's offer.
    pub fn create(req: CreateEnvironment, platform: &Platform) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        let name = match EnvName::parse(req.name) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push("name", e.to_string());
                None
            }
        };
        let draft = Draft {
            airflow_version: req
                .airflow_version
                .unwrap_or_else(|| DEFAULT_AIRFLOW_VERSION.to_owned()),
            executor: req.executor.unwrap_or_default(),
            environment_class: req.environment_class.unwrap_or_default(),
            min_workers: req.min_workers.unwrap_or(0),
            max_workers: req.max_workers.unwrap_or(10),
            worker_weight: req.worker_weight.unwrap_or(DEFAULT_WORKER_WEIGHT),
            hibernate_after_idle_minutes: req
                .hibernate_after_idle_minutes
                .unwrap_or(DEFAULT_HIBERNATE_AFTER_IDLE_MINUTES),
            schedulers: req.schedulers.unwrap_or(1),
            airflow_config_overrides: req.airflow_config_overrides.unwrap_or_default(),
            env_vars: req.env_vars.unwrap_or_default(),
            requirements: req.requirements.unwrap_or_default(),
            tags: req.tags.unwrap_or_default(),
        };
        let checked = draft.validate(platform, errors);
        match (name, checked) {
            (Some(name), Ok(d)) => Ok(d.into_spec(name)),
            (_, Err(e)) => Err(e),
            (None, Ok(_)) => Err(FieldErrors::default()),
        }
    }

    /// Applies a partial update (absent fields keep their value; maps are replaced whole) and
    /// validates the result.
    pub fn update(&self, req: UpdateEnvironment, platform: &Platform) -> Result<Self, FieldErrors> {
        let draft = Draft {
            airflow_version: req
                .airflow_version
                .unwrap_or_else(|| self.airflow_version.0.clone()),
            executor: req.executor.unwrap_or(self.executor),
            environment_class: req.environment_class.unwrap_or(self.environment_class),
            min_workers: req.min_workers.unwrap_or(self.min_workers),
            max_workers: req.max_workers.unwrap_or(self.max_workers),
            worker_weight: req.worker_weight.unwrap_or(self.worker_weight),
            hibernate_after_idle_minutes: req
                .hibernate_after_idle_minutes
                .unwrap_or(self.hibernate_after_idle_minutes),
            schedulers: req.schedulers.unwrap_or(self.schedulers),
            airflow_config_overrides: req
                .airflow_config_overrides
                .unwrap_or_else(|| self.airflow_config_overrides.clone()),
            env_vars: req.env_vars.unwrap_or_else(|| self.env_vars.clone()),
            requirements: req
                .requirements
                .unwrap_or_else(|| self.requirements.clone()),
            tags: req.tags.unwrap_or_else(|| self.tags.clone()),
        };
        Ok(draft
            .validate(platform, FieldErrors::default())?
            .into_spec(self.name.clone()))
    }

    /// Celery tasks one worker of this environment runs at once.
    pub fn worker_concurrency(&self) -> u32 {
        self.environment_class.worker_concurrency()
    }
}

/// A spec's fields before validation.
struct Draft {
    airflow_version: String,
    executor: Executor,
    environment_class: EnvironmentClass,
    min_workers: u32,
    max_workers: u32,
    worker_weight: u32,
    hibernate_after_idle_minutes: u32,
    schedulers: u32,
    airflow_config_overrides: BTreeMap<String, String>,
    env_vars: BTreeMap<String, String>,
    requirements: String,
    tags: BTreeMap<String, String>,
}

impl Draft {
    fn validate(self, platform: &Platform, mut errors: FieldErrors) -> Result<Self, FieldErrors> {
        if !platform.airflow_versions.contains(&self.airflow_version) {
            errors.push(
                "airflow_version",
                format!(
                    "{:?} is not offered by this platform (allowed: {})",
                    self.airflow_version,
                    platform.airflow_versions.join(", ")
                ),
            );
        }
        if self.max_workers > MAX_WORKERS_LIMIT {
            errors.push(
                "max_workers",
                format!("must be at most {MAX_WORKERS_LIMIT}"),
            );
        }
        if self.max_workers == 0 {
            errors.push("max_workers", "must be at least 1");
        }
        if self.min_workers > self.max_workers {
            errors.push(
                "min_workers",
                format!(
                    "must not exceed max_workers ({} > {})",
                    self.min_workers, self.max_workers
                ),
            );
        }
        if !(1..=MAX_WORKER_WEIGHT).contains(&self.worker_weight) {
            errors.push(
                "worker_weight",
                format!("must be between 1 and {MAX_WORKER_WEIGHT}"),
            );
        }
        if self.hibernate_after_idle_minutes > MAX_HIBERNATE_AFTER_IDLE_MINUTES {
            errors.push(
                "hibernate_after_idle_minutes",
                format!(
                    "must be between 0 (never) and {MAX_HIBERNATE_AFTER_IDLE_MINUTES} (a week)"
                ),
            );
        }
        if !(1..=MAX_SCHEDULERS).contains(&self.schedulers) {
            errors.push(
                "schedulers",
                format!("must be between 1 and {MAX_SCHEDULERS}"),
            );
        }
        check_config_overrides(&self.airflow_config_overrides, &mut errors);
        check_env_vars(&self.env_vars, &mut errors);
        if self.requirements.len() > MAX_REQUIREMENTS_LEN {
            errors.push(
                "requirements",
                format!("must be at most {MAX_REQUIREMENTS_LEN} bytes"),
            );
        }
        if self.requirements.contains('\0') {
            errors.push("requirements", "must not contain NUL bytes");
        }
        check_tags(&self.tags, &mut errors);
        errors.into_result(self)
    }

    fn into_spec(self, name: EnvName) -> EnvironmentSpec {
        EnvironmentSpec {
            name,
            airflow_version: AirflowVersion(self.airflow_version),
            executor: self.executor,
            environment_class: self.environment_class,
            min_workers: self.min_workers,
            max_workers: self.max_workers,
            worker_weight: self.worker_weight,
            hibernate_after_idle_minutes: self.hibernate_after_idle_minutes,
            schedulers: self.schedulers,
            airflow_config_overrides: self.airflow_config_overrides,
            env_vars: self.env_vars,
            requirements: self.requirements,
            tags: self.tags,
        }
    }
}

/// Airflow settings the platform sets itself: executor, database and broker URLs, secrets, auth,
/// folders, ports. An entry ending in `*` covers every key of that prefix. Airflow also reads
/// `<key>_cmd` and `<key>_secret` variants, which are refused with their key.
const PLATFORM_OWNED_CONFIG: &[&str] = &[
    "core.executor",
    "core.fernet_key",
    "core.sql_alchemy_conn",
    "core.dags_folder",
    "core.plugins_folder",
    "core.execution_api_server_url",
    "core.auth_manager",
    "core.internal_api_secret_key",
    "core.hostname_callable",
    "database.sql_alchemy_conn*",
    "celery.broker_url",
    "celery.result_backend",
    "celery.worker_enable_remote_control",
    "celery_broker_transport_options.*",
    "api.secret_key",
    "api.host",
    "api.port",
    "api.base_url",
    "api_auth.*",
    "execution_api.*",
    "webserver.secret_key",
    "simple_auth_manager.*",
    "logging.base_log_folder",
    "logging.worker_log_server_port",
    "logging.trigger_log_server_port",
    "logging.dag_processor_child_process_log_directory",
    "kubernetes_executor.*",
    "secrets.*",
];

pub(crate) fn is_platform_owned(key: &str) -> bool {
    let base = key
        .strip_suffix("_cmd")
        .or_else(|| key.strip_suffix("_secret"))
        .unwrap_or(key);
    PLATFORM_OWNED_CONFIG
        .iter()
        .any(|owned| match owned.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix) || base.starts_with(prefix),
            None => key == *owned || base == *owned,
        })
}

fn is_config_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check_config_overrides(map: &BTreeMap<String, String>, errors: &mut FieldErrors) {
    if map.len() > MAX_MAP_ENTRIES {
        errors.push(
            "airflow_config_overrides",
            format!("must have at most {MAX_MAP_ENTRIES} entries"),
        );
    }
    for (key, value) in map {
        let field = format!("airflow_config_overrides.{key}");
        match key.split_once('.') {
            Some((section, option)) if is_config_word(section) && is_config_word(option) => {
                if is_platform_owned(key) {
                    errors.push(
                        field,
                        format!("{key} is set by the platform and cannot be overridden"),
                    );
                    continue;
                }
            }
            _ => {
                errors.push(
                    field,
                    "keys must be `section.key` in lower case (letters, digits, '_')",
                );
                continue;
            }
        }
        if value.len() > MAX_VALUE_LEN {
            errors.push(
                field,
                format!("value must be at most {MAX_VALUE_LEN} bytes"),
            );
        }
    }
}

/// Variables the platform sets or that would change how the runtime itself starts.
const RESERVED_ENV_VARS: &[&str] = &[
    "AIRFLOW_HOME",
    "PATH",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
];

fn check_env_vars(map: &BTreeMap<String, String>, errors: &mut FieldErrors) {
    if map.len() > MAX_MAP_ENTRIES {
        errors.push(
            "env_vars",
            format!("must have at most {MAX_MAP_ENTRIES} entries"),
        );
    }
    for (key, value) in map {
        let field = format!("env_vars.{key}");
        let well_formed = key.len() <= 128
            && key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            errors.push(
                field,
                "names must match [A-Za-z_][A-Za-z0-9_]* and be at most 128 characters",
            );
        } else if key.starts_with("AIRFLOW__") {
            errors.push(
                field,
                "Airflow settings go in airflow_config_overrides, not env_vars",
            );
        } else if key.starts_with("HANGAR_") || RESERVED_ENV_VARS.contains(&key.as_str()) {
            errors.push(field, format!("{key} is set by the platform"));
        } else if value.len() > MAX_VALUE_LEN || value.contains('\0') {
            errors.push(
                field,
                format!("value must be at most {MAX_VALUE_LEN} bytes without NUL"),
            );
        }
    }
}

fn check_tags(map: &BTreeMap<String, String>, errors: &mut FieldErrors) {
    if map.len() > MAX_TAGS {
        errors.push("tags", format!("must have at most {MAX_TAGS} entries"));
    }
    for (key, value) in map {
        if key.is_empty() || key.chars().count() > 128 {
            errors.push(format!("tags.{key}"), "keys must be 1 to 128 characters");
        } else if value.chars().count() > 256 {
            errors.push(
                format!("tags.{key}"),
                "values must be at most 256 characters",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rstest::rstest;

    fn req(json: serde_json::Value) -> CreateEnvironment {
        serde_json::from_value(json).unwrap()
    }

    fn fields(r: Result<EnvironmentSpec, FieldErrors>) -> Vec<String> {
        r.unwrap_err().0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn defaults_fill_an_empty_request() {
        let spec = EnvironmentSpec::create(
            req(serde_json::json!({"name": "etl"})),
            &Platform::default(),
        )
        .unwrap();
        insta::assert_json_snapshot!(spec, @r#"
        {
          "name": "etl",
          "airflow_version": "3.3.2",
          "executor": "celery",
          "environment_class": "small",
          "min_workers": 0,
          "max_workers": 10,
          "worker_weight": 1,
          "hibernate_after_idle_minutes": 60,
          "schedulers": 1,
          "airflow_config_overrides": {},
          "env_vars": {},
          "requirements": "",
          "tags": {}
        }
        "#);
    }

    #[rstest]
    #[case(serde_json::json!({"name": "UPPER"}), "name")]
    #[case(serde_json::json!({"name": "a", "min_workers": 3, "max_workers": 2}), "min_workers")]
    #[case(serde_json::json!({"name": "a", "max_workers": 101}), "max_workers")]
    #[case(serde_json::json!({"name": "a", "worker_weight": 0}), "worker_weight")]
    #[case(serde_json::json!({"name": "a", "worker_weight": 101}), "worker_weight")]
    #[case(serde_json::json!({"name": "a", "hibernate_after_idle_minutes": 10081}), "hibernate_after_idle_minutes")]
    #[case(serde_json::json!({"name": "a", "schedulers": 0}), "schedulers")]
    #[case(serde_json::json!({"name": "a", "schedulers": 6}), "schedulers")]
    #[case(serde_json::json!({"name": "a", "airflow_version": "2.10.5"}), "airflow_version")]
    #[case(serde_json::json!({"name": "a", "airflow_config_overrides": {"core.executor": "LocalExecutor"}}), "airflow_config_overrides.core.executor")]
    #[case(serde_json::json!({"name": "a", "airflow_config_overrides": {"database.sql_alchemy_conn_cmd": "cat x"}}), "airflow_config_overrides.database.sql_alchemy_conn_cmd")]
    #[case(serde_json::json!({"name": "a", "airflow_config_overrides": {"celery_broker_transport_options.global_keyprefix": "x"}}), "airflow_config_overrides.celery_broker_transport_options.global_keyprefix")]
    #[case(serde_json::json!({"name": "a", "airflow_config_overrides": {"nodot": "x"}}), "airflow_config_overrides.nodot")]
    #[case(serde_json::json!({"name": "a", "env_vars": {"AIRFLOW__CORE__EXECUTOR": "x"}}), "env_vars.AIRFLOW__CORE__EXECUTOR")]
    #[case(serde_json::json!({"name": "a", "env_vars": {"PATH": "/tmp"}}), "env_vars.PATH")]
    #[case(serde_json::json!({"name": "a", "env_vars": {"1BAD": "x"}}), "env_vars.1BAD")]
    fn refuses_bad_fields_by_name(#[case] json: serde_json::Value, #[case] field: &str) {
        let got = fields(EnvironmentSpec::create(req(json), &Platform::default()));
        assert_eq!(got, vec![field.to_owned()]);
    }

    #[test]
    fn reports_every_bad_field_at_once() {
        let got = fields(EnvironmentSpec::create(
            req(serde_json::json!({"name": "A", "schedulers": 9, "airflow_version": "1"})),
            &Platform::default(),
        ));
        assert_eq!(got, vec!["name", "airflow_version", "schedulers"]);
    }

    #[test]
    fn tenant_config_is_accepted() {
        let spec = EnvironmentSpec::create(
            req(serde_json::json!({
                "name": "a",
                "airflow_config_overrides": {"core.parallelism": "64", "celery.worker_autoscale": "4,1"},
                "env_vars": {"AIRFLOW_CONN_WAREHOUSE": "postgres://x", "TEAM": "data"},
            })),
            &Platform::default(),
        );
        assert!(spec.is_ok(), "{spec:?}");
    }

    #[test]
    fn update_keeps_absent_fields_and_revalidates() {
        let p = Platform::default();
        let spec = EnvironmentSpec::create(
            req(serde_json::json!({"name": "a", "max_workers": 4, "tags": {"team": "x"}})),
            &p,
        )
        .unwrap();
        let upd: UpdateEnvironment =
            serde_json::from_value(serde_json::json!({"min_workers": 2})).unwrap();
        let next = spec.update(upd, &p).unwrap();
        assert_eq!((next.min_workers, next.max_workers), (2, 4));
        assert_eq!(next.tags, spec.tags);
        let bad: UpdateEnvironment =
            serde_json::from_value(serde_json::json!({"min_workers": 5})).unwrap();
        assert_eq!(fields(spec.update(bad, &p)), vec!["min_workers"]);
    }

    #[rstest]
    #[case("celery", Executor::Celery)]
    #[case("kubernetes", Executor::Kubernetes)]
    #[case("celery_kubernetes", Executor::CeleryKubernetes)]
    #[case("hangar", Executor::Hangar)]
    fn executors_have_their_api_names(#[case] name: &str, #[case] executor: Executor) {
        let spec = EnvironmentSpec::create(
            req(serde_json::json!({"name": "a", "executor": name})),
            &Platform::default(),
        )
        .unwrap();
        assert_eq!(spec.executor, executor);
        assert_eq!(serde_json::to_value(executor).unwrap(), name);
    }

    #[rstest]
    #[case(EnvironmentClass::Micro, 3)]
    #[case(EnvironmentClass::Small, 5)]
    #[case(EnvironmentClass::Medium, 10)]
    #[case(EnvironmentClass::Large, 20)]
    #[case(EnvironmentClass::Xlarge, 40)]
    fn classes_follow_mwaa_concurrency(#[case] class: EnvironmentClass, #[case] n: u32) {
        assert_eq!(class.worker_concurrency(), n);
    }
}
