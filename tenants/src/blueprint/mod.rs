//! The blueprint: from an environment's spec to its components (which Airflow commands run, how
//! many of each, with what settings and resources), then one renderer per runtime: [`process`]
//! (command lines and environments on one machine) and [`kubernetes`] (the objects of a
//! namespace). Pure, so both runtimes render the same Airflow configuration, tested here
//! without Airflow or a cluster.
//!
//! Precedence of Airflow settings: tenant `env_vars`, then tenant `airflow_config_overrides`,
//! then the platform's own settings, which always win (validation already refuses overriding
//! them). Secret settings are only ever in the environment's `airflow.cfg` ([`airflow_cfg`]).

use std::collections::BTreeMap;

use crate::airflow_users;
use crate::api::EnvironmentSecrets;
use crate::spec::{EnvironmentClass, EnvironmentSpec};

pub mod kubernetes;
mod process;

pub use process::{airflow_env, blueprint, Blueprint, Layout, Ports, ProcessSpec};

/// Airflow's `[core] executor` of an environment with the `hangar` executor: the class of the
/// package Hangar installs into every Python runtime it builds (`python/hangar_executor`).
pub const HANGAR_EXECUTOR: &str = "hangar_executor.HangarExecutor";

/// The variable that tells the Hangar executor where its environment's task-pool socket is.
pub const TASK_POOL_SOCKET_VAR: &str = "HANGAR_TASK_POOL_SOCKET";

/// The simple auth manager's passwords file, in AIRFLOW_HOME. The api-server opens it for
/// appending (to add a user it lacks), so it must be writable by the environment's processes.
pub const PASSWORDS_FILE: &str = "simple_auth_manager_passwords.json";

/// How the environment reaches its metadata database and broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends {
    /// SQLAlchemy URL of its own database, as its own role.
    pub sql_alchemy_conn: String,
    /// Celery broker URL, as its own broker user.
    pub broker_url: String,
    /// The key prefix its broker user is confined to.
    pub broker_key_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentKind {
    ApiServer,
    Scheduler,
    DagProcessor,
    Triggerer,
    Worker,
}

impl ComponentKind {
    /// The component's name: a process's (before its index) or a Deployment's.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiServer => "api-server",
            Self::Scheduler => "scheduler",
            Self::DagProcessor => "dag-processor",
            Self::Triggerer => "triggerer",
            Self::Worker => "worker",
        }
    }
}

/// One component of an environment, whatever runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub kind: ComponentKind,
    /// How many run at once.
    pub replicas: u32,
    /// The `airflow` command's arguments.
    pub args: Vec<String>,
}

/// What the components' arguments depend on besides the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgsOptions {
    /// Where the api-server listens.
    pub api_host: String,
    pub api_port: u16,
    /// Whether workers and the triggerer serve their logs to the api-server (Kubernetes), or
    /// the api-server reads them from the environment's own folder (one machine).
    pub serve_logs: bool,
}

/// The environment's components, in start order: the api-server, `spec.schedulers`
/// schedulers, the DAG processor, the triggerer and `workers` Celery workers (Celery's default
/// hostname; the process runtime names each of its own).
pub fn components(spec: &EnvironmentSpec, workers: u32, opts: &ArgsOptions) -> Vec<Component> {
    let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let port = opts.api_port.to_string();
    let mut triggerer = owned(&["triggerer"]);
    // Without serving logs the triggerer needs no port (one machine: the api-server reads the
    // environment's own log folder, deferred tasks' trigger logs included).
    if !opts.serve_logs {
        triggerer.push("--skip-serve-logs".to_owned());
    }
    vec![
        Component {
            kind: ComponentKind::ApiServer,
            replicas: 1,
            args: owned(&["api-server", "-H", &opts.api_host, "-p", &port]),
        },
        Component {
            kind: ComponentKind::Scheduler,
            replicas: spec.schedulers,
            args: owned(&["scheduler"]),
        },
        Component {
            kind: ComponentKind::DagProcessor,
            replicas: 1,
            args: owned(&["dag-processor"]),
        },
        Component {
            kind: ComponentKind::Triggerer,
            replicas: 1,
            args: triggerer,
        },
        Component {
            kind: ComponentKind::Worker,
            replicas: workers,
            args: worker_args(spec, None, opts.serve_logs),
        },
    ]
}

/// A Celery worker's arguments, with its concurrency from the environment class given only to
/// workers, so that a class change restarts (retires) only them.
pub fn worker_args(
    spec: &EnvironmentSpec,
    hostname: Option<&str>,
    serve_logs: bool,
) -> Vec<String> {
    let mut args = vec![
        "celery".to_owned(),
        "worker".to_owned(),
        "--concurrency".to_owned(),
        spec.worker_concurrency().to_string(),
    ];
    if let Some(hostname) = hostname {
        args.extend(["--celery-hostname".to_owned(), hostname.to_owned()]);
    }
    // Gossip and mingle subscribe to other workers' broadcasts (PSUBSCRIBE, which Redis ACLs
    // match literally, not by prefix); an environment's workers need neither.
    args.extend(["--without-gossip".to_owned(), "--without-mingle".to_owned()]);
    if !serve_logs {
        // The api-server reads task logs from the environment's own logs folder, so no worker
        // serves them: a retired worker still draining keeps no port its successor needs.
        args.push("--skip-serve-logs".to_owned());
    }
    args
}

/// The `AIRFLOW__SECTION__KEY` variable of a setting.
pub(crate) fn env_key(section: &str, key: &str) -> String {
    format!(
        "AIRFLOW__{}__{}",
        section.to_uppercase(),
        key.to_uppercase()
    )
}

/// The settings [`airflow_cfg`] holds, never given as variables.
const SECRET_SETTINGS: [(&str, &str); 6] = [
    ("core", "fernet_key"),
    ("database", "sql_alchemy_conn"),
    ("celery", "broker_url"),
    ("celery", "result_backend"),
    ("api", "secret_key"),
    ("api_auth", "jwt_secret"),
];

/// The variables every runtime gives every component: the tenant's variables and settings,
/// then the platform's shared settings (`executor`: Airflow's `[core] executor`), then the
/// runtime's own `platform` settings (folders, addresses, ports), which win over everything;
/// the secret settings are removed (a variable, or its `_CMD` / `_SECRET` form, would win
/// over the configuration file).
pub fn airflow_settings(
    spec: &EnvironmentSpec,
    executor: &str,
    backends: &Backends,
    platform: impl IntoIterator<Item = (&'static str, &'static str, String)>,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = spec.env_vars.clone();
    // Defaults a tenant may override: new DAG files are discovered within 10 s (Airflow's
    // default is 5 minutes).
    env.insert(
        env_key("dag_processor", "refresh_interval"),
        "10".to_owned(),
    );
    // A task's calls to its Execution API wait up to 30 s (Airflow's default is 5 s, retried 5
    // times): on capacity shared by many tasks, a burst of task starts can keep the one
    // api-server busy for seconds, and a client that gives up and resends only adds to its
    // queue until the task is failed for a slow answer.
    env.insert(env_key("workers", "execution_api_timeout"), "30".to_owned());
    for (k, v) in &spec.airflow_config_overrides {
        if let Some((section, key)) = k.split_once('.') {
            env.insert(env_key(section, key), v.clone());
        }
    }
    let shared: [(&str, &str, String); 6] = [
        ("core", "executor", executor.to_owned()),
        ("core", "load_examples", "False".to_owned()),
        (
            "core",
            "simple_auth_manager_users",
            airflow_users::simple_auth_manager_users(),
        ),
        // Remote control needs PSUBSCRIBE on a pidbox channel, which Redis ACLs match literally
        // (not by the user's channel prefix); Hangar drains workers with SIGTERM instead.
        ("celery", "worker_enable_remote_control", "False".to_owned()),
        (
            "celery_broker_transport_options",
            "global_keyprefix",
            backends.broker_key_prefix.clone(),
        ),
        // One API worker process: the UI and REST API of one environment need no more, and
        // each worker costs ~200 MB.
        ("api", "workers", "1".to_owned()),
    ];
    for (section, key, value) in shared.into_iter().chain(platform) {
        env.insert(env_key(section, key), value);
    }
    for (section, key) in SECRET_SETTINGS {
        let name = env_key(section, key);
        for suffix in ["", "_CMD", "_SECRET"] {
            env.remove(&format!("{name}{suffix}"));
        }
    }
    env
}

/// The environment's secret settings as an `airflow.cfg` (`AIRFLOW_CONFIG`): kept out of every
/// process's environment and argv, where other users could read them (`/proc/<pid>/environ`),
/// in a file only the environment's own user may read. Airflow's variables win over the file,
/// so validation refuses tenant variables for these settings.
pub fn airflow_cfg(secrets: &EnvironmentSecrets, backends: &Backends) -> String {
    let result_backend = format!(
        "db+{}",
        backends
            .sql_alchemy_conn
            .replacen("postgresql+psycopg2://", "postgresql://", 1)
    );
    let sections: [(&str, &[(&str, &str)]); 5] = [
        ("core", &[("fernet_key", &secrets.fernet_key)]),
        (
            "database",
            &[("sql_alchemy_conn", &backends.sql_alchemy_conn)],
        ),
        (
            "celery",
            &[
                ("broker_url", &backends.broker_url),
                ("result_backend", &result_backend),
            ],
        ),
        ("api", &[("secret_key", &secrets.api_secret_key)]),
        ("api_auth", &[("jwt_secret", &secrets.jwt_secret)]),
    ];
    let mut out = String::from("# Written by Hangar: the environment's secrets. Do not edit.\n");
    for (section, keys) in sections {
        out.push_str(&format!("\n[{section}]\n"));
        for (key, value) in keys {
            // Airflow reads the file with configparser's interpolation: `%` must be doubled.
            out.push_str(&format!("{key} = {}\n", value.replace('%', "%%")));
        }
    }
    out
}

/// CPU and memory of one running component (request = limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resources {
    pub cpu_millis: u32,
    pub memory_mib: u32,
}

impl Resources {
    pub const fn new(cpu_millis: u32, memory_mib: u32) -> Self {
        Self {
            cpu_millis,
            memory_mib,
        }
    }

    /// `n` of these.
    pub fn times(self, n: u32) -> Self {
        Self::new(self.cpu_millis * n, self.memory_mib * n)
    }

    /// The larger of each.
    pub fn max(self, other: Self) -> Self {
        Self::new(
            self.cpu_millis.max(other.cpu_millis),
            self.memory_mib.max(other.memory_mib),
        )
    }
}

impl std::ops::Add for Resources {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self::new(
            self.cpu_millis + other.cpu_millis,
            self.memory_mib + other.memory_mib,
        )
    }
}

/// What one component of an environment of `class` gets. A worker gets its class's size (MWAA's
/// meaning); a scheduler grows with the class, since it schedules what the workers run; the
/// others are fixed: their load depends on the DAG files, not on the workers.
pub fn component_resources(class: EnvironmentClass, kind: ComponentKind) -> Resources {
    match kind {
        ComponentKind::Worker => {
            Resources::new(class.worker_cpu_millis(), class.worker_memory_mib())
        }
        ComponentKind::Scheduler => match class {
            EnvironmentClass::Micro | EnvironmentClass::Small => Resources::new(500, 1024),
            EnvironmentClass::Medium => Resources::new(1000, 2048),
            EnvironmentClass::Large => Resources::new(2000, 4096),
            EnvironmentClass::Xlarge => Resources::new(4000, 8192),
        },
        ComponentKind::ApiServer => Resources::new(500, 1024),
        ComponentKind::DagProcessor => Resources::new(500, 1024),
        ComponentKind::Triggerer => Resources::new(250, 512),
    }
}

/// The process renderer's tests keep the module path they had before the blueprint was split
/// (`blueprint::tests`), and so their snapshots' names, in `src/snapshots`.
#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
