//! The process renderer: an environment's components as the processes of one machine
//! (command lines and environments) and the files they need, in the places and on the ports
//! the process runtime gave it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    airflow_cfg, airflow_settings, components, env_key, worker_args, ArgsOptions, Backends,
    ComponentKind, HANGAR_EXECUTOR, PASSWORDS_FILE, TASK_POOL_SOCKET_VAR,
};
use crate::airflow_users;
use crate::api::EnvironmentSecrets;
use crate::spec::{EnvironmentSpec, Executor};

/// Where an environment lives on its machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// AIRFLOW_HOME.
    pub home: PathBuf,
    /// The Python runtime (a virtualenv) with Airflow installed.
    pub runtime: PathBuf,
    /// The path Hangar serves the environment's Airflow under (`crate::api::webserver_path`):
    /// the api-server serves under it too (`[api] base_url`), so the UI's links work through
    /// the proxy.
    pub url_path: String,
}

impl Layout {
    pub fn dags(&self) -> PathBuf {
        self.home.join("dags")
    }
    pub fn plugins(&self) -> PathBuf {
        self.home.join("plugins")
    }
    pub fn logs(&self) -> PathBuf {
        self.home.join("logs")
    }
    pub fn passwords_file(&self) -> PathBuf {
        self.home.join(PASSWORDS_FILE)
    }
    /// The environment's secret settings (`AIRFLOW_CONFIG`), readable only by its own user.
    pub fn config_file(&self) -> PathBuf {
        self.home.join("airflow.cfg")
    }
    /// The settings a task of the task pool reads (`AIRFLOW_CONFIG`): none of the secrets.
    pub fn task_config_file(&self) -> PathBuf {
        self.home.join("task.cfg")
    }
    /// The only folder besides `logs` its processes may write: `HOME` and `TMPDIR`.
    pub fn scratch(&self) -> PathBuf {
        self.home.join("tmp")
    }
    pub fn airflow(&self) -> PathBuf {
        self.runtime.join("bin").join("airflow")
    }
    /// Where the agent's task pool listens for the environment's executor (`hangar`): in the
    /// agent's own `run` folder, the socket itself the environment user's alone.
    pub fn task_pool_socket(&self) -> PathBuf {
        self.home.join("run").join("task-pool.sock")
    }
}

/// The environment's own ports on its machine's loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub api: u16,
    pub worker_log: u16,
    pub trigger_log: u16,
}

/// One process of an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Unique within the environment: `api-server`, `scheduler-0`, `worker-2`, …
    pub name: String,
    pub kind: ComponentKind,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// Everything the runtime must create to run an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blueprint {
    pub processes: Vec<ProcessSpec>,
    /// Files to write before starting (path, contents), private to the environment.
    pub files: Vec<(PathBuf, String)>,
    /// The variables of each task the cell's task pool runs (the `hangar` executor only): its
    /// components' Airflow settings, but the settings file without secrets
    /// ([`TASK_CFG`]) and no task pool socket.
    pub task_env: Option<BTreeMap<String, String>>,
}

/// The settings file of a task of the task pool: it holds nothing, so that Airflow's settings
/// come from its variables and defaults, and none of the environment's secrets (a task reaches
/// its environment only through the Execution API, with its workload's own token).
pub const TASK_CFG: &str = "# Written by Hangar: a task's settings are its variables. It has no \
secrets:\n# it reaches its environment through the Execution API, with its own token.\n";

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The environment variables every component of the environment shares.
pub fn airflow_env(
    spec: &EnvironmentSpec,
    layout: &Layout,
    ports: Ports,
    backends: &Backends,
) -> BTreeMap<String, String> {
    let platform: [(&str, &str, String); 9] = [
        ("core", "dags_folder", path(&layout.dags())),
        ("core", "plugins_folder", path(&layout.plugins())),
        (
            "core",
            "execution_api_server_url",
            format!(
                "http://127.0.0.1:{}{}execution/",
                ports.api, layout.url_path
            ),
        ),
        (
            "core",
            "simple_auth_manager_passwords_file",
            path(&layout.passwords_file()),
        ),
        ("api", "port", ports.api.to_string()),
        ("api", "base_url", layout.url_path.clone()),
        ("api", "host", "127.0.0.1".to_owned()),
        (
            "logging",
            "worker_log_server_port",
            ports.worker_log.to_string(),
        ),
        (
            "logging",
            "trigger_log_server_port",
            ports.trigger_log.to_string(),
        ),
    ];
    // One machine runs Celery workers for any executor but `hangar`, whose tasks the agent's
    // pool of task slots runs.
    let executor = if spec.executor == Executor::Hangar {
        HANGAR_EXECUTOR
    } else {
        "CeleryExecutor"
    };
    let mut env = airflow_settings(spec, executor, backends, platform);
    if spec.executor == Executor::Hangar {
        env.insert(
            TASK_POOL_SOCKET_VAR.to_owned(),
            path(&layout.task_pool_socket()),
        );
    }
    env.insert(env_key("logging", "base_log_folder"), path(&layout.logs()));
    env.insert("AIRFLOW_HOME".to_owned(), path(&layout.home));
    env.insert("AIRFLOW_CONFIG".to_owned(), path(&layout.config_file()));
    env.insert("HOME".to_owned(), path(&layout.scratch()));
    env.insert("TMPDIR".to_owned(), path(&layout.scratch()));
    env
}

/// The environment's processes with `workers` Celery workers (none with the `hangar`
/// executor), and its files.
pub fn blueprint(
    spec: &EnvironmentSpec,
    secrets: &EnvironmentSecrets,
    layout: &Layout,
    ports: Ports,
    backends: &Backends,
    workers: u32,
) -> Blueprint {
    let env = airflow_env(spec, layout, ports, backends);
    let workers = if spec.executor == Executor::Hangar {
        0
    } else {
        workers
    };
    let airflow = path(&layout.airflow());
    let process = |name: String, kind, args: Vec<String>| ProcessSpec {
        name,
        kind,
        argv: std::iter::once(airflow.clone()).chain(args).collect(),
        env: env.clone(),
    };
    let opts = ArgsOptions {
        api_host: "127.0.0.1".to_owned(),
        api_port: ports.api,
        serve_logs: false,
    };
    let mut processes = Vec::new();
    for c in components(spec, workers, &opts) {
        let name = c.kind.as_str();
        match c.kind {
            ComponentKind::Scheduler => processes.extend(
                (0..c.replicas).map(|i| process(format!("{name}-{i}"), c.kind, c.args.clone())),
            ),
            // Each worker has a Celery hostname of its own, so two on one machine never clash.
            ComponentKind::Worker => processes.extend((0..c.replicas).map(|i| {
                let hostname = format!("{}-worker-{i}@%h", spec.name);
                let args = worker_args(spec, Some(&hostname), opts.serve_logs);
                process(format!("{name}-{i}"), c.kind, args)
            })),
            _ => processes.push(process(name.to_owned(), c.kind, c.args)),
        }
    }
    let passwords = airflow_users::passwords_file(secrets);
    let mut files = vec![
        (layout.passwords_file(), passwords),
        (layout.config_file(), airflow_cfg(secrets, backends)),
    ];
    let task_env = (spec.executor == Executor::Hangar).then(|| {
        files.push((layout.task_config_file(), TASK_CFG.to_owned()));
        let mut task = env.clone();
        task.remove(TASK_POOL_SOCKET_VAR);
        task.insert(
            "AIRFLOW_CONFIG".to_owned(),
            path(&layout.task_config_file()),
        );
        task
    });
    Blueprint {
        processes,
        files,
        task_env,
    }
}
