//! The blueprint: from an environment's spec, secrets and the places and ports the runtime gave
//! it, to the exact processes that make up its Airflow (command lines and environments) and the
//! files they need. Pure, so the process runtime and the Kubernetes runtime render the same
//! configuration, and it is tested here without Airflow.
//!
//! Precedence: tenant `env_vars`, then tenant `airflow_config_overrides`, then the platform's
//! own settings, which always win (validation already refuses overriding them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::airflow_users;
use crate::api::EnvironmentSecrets;
use crate::spec::EnvironmentSpec;

/// The simple auth manager's passwords file, in AIRFLOW_HOME. The api-server opens it for
/// appending (to add a user it lacks), so it must be writable by the environment's processes.
pub const PASSWORDS_FILE: &str = "simple_auth_manager_passwords.json";

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
    /// The only folder besides `logs` its processes may write: `HOME` and `TMPDIR`.
    pub fn scratch(&self) -> PathBuf {
        self.home.join("tmp")
    }
    pub fn airflow(&self) -> PathBuf {
        self.runtime.join("bin").join("airflow")
    }
}

/// The environment's own ports on its machine's loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub api: u16,
    pub worker_log: u16,
    pub trigger_log: u16,
}

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
}

fn env_key(section: &str, key: &str) -> String {
    format!(
        "AIRFLOW__{}__{}",
        section.to_uppercase(),
        key.to_uppercase()
    )
}

fn path(p: &Path) -> String {
    p.display().to_string()
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

/// The environment variables every component of the environment shares.
pub fn airflow_env(
    spec: &EnvironmentSpec,
    layout: &Layout,
    ports: Ports,
    backends: &Backends,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = spec.env_vars.clone();
    // Defaults a tenant may override: new DAG files are discovered within 10 s (Airflow's
    // default is 5 minutes).
    env.insert(
        env_key("dag_processor", "refresh_interval"),
        "10".to_owned(),
    );
    for (k, v) in &spec.airflow_config_overrides {
        if let Some((section, key)) = k.split_once('.') {
            env.insert(env_key(section, key), v.clone());
        }
    }
    let platform: [(&str, &str, String); 15] = [
        ("core", "executor", "CeleryExecutor".to_owned()),
        ("core", "dags_folder", path(&layout.dags())),
        ("core", "plugins_folder", path(&layout.plugins())),
        ("core", "load_examples", "False".to_owned()),
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
            "simple_auth_manager_users",
            airflow_users::simple_auth_manager_users(),
        ),
        (
            "core",
            "simple_auth_manager_passwords_file",
            path(&layout.passwords_file()),
        ),
        // Remote control needs PSUBSCRIBE on a pidbox channel, which Redis ACLs match literally
        // (not by the user's channel prefix); Hangar drains workers with SIGTERM instead.
        ("celery", "worker_enable_remote_control", "False".to_owned()),
        (
            "celery_broker_transport_options",
            "global_keyprefix",
            backends.broker_key_prefix.clone(),
        ),
        ("api", "port", ports.api.to_string()),
        ("api", "base_url", layout.url_path.clone()),
        ("api", "host", "127.0.0.1".to_owned()),
        // One API worker process: the UI and REST API of one environment need no more, and
        // each worker costs ~200 MB.
        ("api", "workers", "1".to_owned()),
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
    for (section, key, value) in platform {
        env.insert(env_key(section, key), value);
    }
    // The secret settings come from the configuration file only: a variable (or its `_CMD` /
    // `_SECRET` form) would win over it.
    for (section, key) in SECRET_SETTINGS {
        let name = env_key(section, key);
        for suffix in ["", "_CMD", "_SECRET"] {
            env.remove(&format!("{name}{suffix}"));
        }
    }
    env.insert(env_key("logging", "base_log_folder"), path(&layout.logs()));
    env.insert("AIRFLOW_HOME".to_owned(), path(&layout.home));
    env.insert("AIRFLOW_CONFIG".to_owned(), path(&layout.config_file()));
    env.insert("HOME".to_owned(), path(&layout.scratch()));
    env.insert("TMPDIR".to_owned(), path(&layout.scratch()));
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

/// The environment's processes with `workers` Celery workers, and its files.
pub fn blueprint(
    spec: &EnvironmentSpec,
    secrets: &EnvironmentSecrets,
    layout: &Layout,
    ports: Ports,
    backends: &Backends,
    workers: u32,
) -> Blueprint {
    let env = airflow_env(spec, layout, ports, backends);
    let airflow = path(&layout.airflow());
    let process = |name: String, kind, args: &[&str]| ProcessSpec {
        name,
        kind,
        argv: std::iter::once(airflow.clone())
            .chain(args.iter().map(|a| (*a).to_owned()))
            .collect(),
        env: env.clone(),
    };
    let mut processes = vec![process(
        "api-server".to_owned(),
        ComponentKind::ApiServer,
        &[
            "api-server",
            "-H",
            "127.0.0.1",
            "-p",
            &ports.api.to_string(),
        ],
    )];
    for i in 0..spec.schedulers {
        processes.push(process(
            format!("scheduler-{i}"),
            ComponentKind::Scheduler,
            &["scheduler"],
        ));
    }
    processes.push(process(
        "dag-processor".to_owned(),
        ComponentKind::DagProcessor,
        &["dag-processor"],
    ));
    // Like the workers, the triggerer serves no logs: the api-server reads the environment's
    // own log folder (deferred tasks' trigger logs included), which saves a process (~130 MB).
    processes.push(process(
        "triggerer".to_owned(),
        ComponentKind::Triggerer,
        &["triggerer", "--skip-serve-logs"],
    ));
    for i in 0..workers {
        processes.push(worker(&process, spec, i));
    }
    let passwords = airflow_users::passwords_file(secrets);
    Blueprint {
        processes,
        files: vec![
            (layout.passwords_file(), passwords),
            (layout.config_file(), airflow_cfg(secrets, backends)),
        ],
    }
}

/// Worker `i`, with its concurrency from the environment class given only to workers, so that
/// a class change restarts (retires) only them.
fn worker(
    process: &impl Fn(String, ComponentKind, &[&str]) -> ProcessSpec,
    spec: &EnvironmentSpec,
    i: u32,
) -> ProcessSpec {
    let concurrency = spec.worker_concurrency().to_string();
    let hostname = format!("{}-worker-{i}@%h", spec.name);
    let args = [
        "celery",
        "worker",
        "--concurrency",
        &concurrency,
        "--celery-hostname",
        &hostname,
        // Gossip and mingle subscribe to other workers' broadcasts (PSUBSCRIBE, which Redis
        // ACLs match literally, not by prefix); an environment's workers need neither.
        "--without-gossip",
        "--without-mingle",
        // The api-server reads task logs from the environment's own logs folder, so no worker
        // serves them: a retired worker still draining keeps no port its successor needs.
        "--skip-serve-logs",
    ];
    process(format!("worker-{i}"), ComponentKind::Worker, &args)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::api::CreateEnvironment;
    use crate::spec::Platform;

    fn fixture() -> (EnvironmentSpec, EnvironmentSecrets, Layout, Ports, Backends) {
        let spec = EnvironmentSpec::create(
            serde_json::from_value::<CreateEnvironment>(serde_json::json!({
                "name": "etl",
                "schedulers": 2,
                "environment_class": "medium",
                "airflow_config_overrides": {"core.parallelism": "64"},
                "env_vars": {"TEAM": "data"},
            }))
            .unwrap(),
            &Platform::default(),
        )
        .unwrap();
        let secrets = EnvironmentSecrets {
            fernet_key: "FERNET".into(),
            jwt_secret: "JWT".into(),
            api_secret_key: "APIKEY".into(),
            db_password: "DBPW".into(),
            broker_password: "BRPW".into(),
            admin_password: "ADMINPW".into(),
        };
        let layout = Layout {
            home: "/var/lib/hangar/envs/e1".into(),
            runtime: "/var/lib/hangar/runtimes/abc".into(),
            url_path: crate::api::webserver_path("acme", "etl"),
        };
        let ports = Ports {
            api: 20001,
            worker_log: 20002,
            trigger_log: 20003,
        };
        let backends = Backends {
            sql_alchemy_conn: "postgresql+psycopg2://env_e1:DBPW@127.0.0.1:5432/env_e1".into(),
            broker_url: "redis://env-e1:BRPW@127.0.0.1:6379/0".into(),
            broker_key_prefix: "hangar:e1:".into(),
        };
        (spec, secrets, layout, ports, backends)
    }

    #[test]
    fn renders_the_whole_environment() {
        let (spec, secrets, layout, ports, backends) = fixture();
        let env = airflow_env(&spec, &layout, ports, &backends);
        insta::assert_debug_snapshot!(env);
        let bp = blueprint(&spec, &secrets, &layout, ports, &backends, 2);
        let argvs: Vec<(String, String)> = bp
            .processes
            .iter()
            .map(|p| (p.name.clone(), p.argv[1..].join(" ")))
            .collect();
        insta::assert_debug_snapshot!(argvs);
        // One Airflow user per role a Hangar role maps to, with passwords derived from the
        // admin's (HMAC-SHA256 of the role's name, hex).
        assert_eq!(
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"],
            "hangar-viewer:viewer,hangar-op:op,hangar-admin:admin"
        );
        let (path, file) = &bp.files[0];
        assert_eq!(path, &layout.passwords_file());
        let users: BTreeMap<String, String> = serde_json::from_str(file).unwrap();
        assert_eq!(
            users,
            BTreeMap::from([
                ("hangar-admin".to_owned(), "ADMINPW".to_owned()),
                (
                    "hangar-op".to_owned(),
                    "467cf9354b2552ff137e23346878282fc9700d3743064254ad96fe065b69659b".to_owned()
                ),
                (
                    "hangar-viewer".to_owned(),
                    "8c421fb7e9e8972105ed76a5b11df2c2873ffc783c847ee261c47b9edbacff0d".to_owned()
                ),
            ])
        );
        insta::assert_snapshot!("airflow_cfg", bp.files[1].1);
    }

    /// Secrets never reach a process's environment or argv, where another user of the machine
    /// could read them; they are in the environment's own configuration file.
    #[test]
    fn no_secret_is_in_any_process_environment_or_argv() {
        let (spec, secrets, layout, ports, backends) = fixture();
        let bp = blueprint(&spec, &secrets, &layout, ports, &backends, 2);
        for p in &bp.processes {
            let all: Vec<&str> = p
                .env
                .iter()
                .flat_map(|(k, v)| [k.as_str(), v.as_str()])
                .chain(p.argv.iter().map(String::as_str))
                .collect();
            for secret in ["FERNET", "JWT", "APIKEY", "DBPW", "BRPW", "ADMINPW"] {
                assert!(
                    all.iter().all(|x| !x.contains(secret)),
                    "{} carries {secret}",
                    p.name
                );
            }
        }
        let cfg = airflow_cfg(&secrets, &backends);
        for secret in ["FERNET", "JWT", "APIKEY", "DBPW", "BRPW"] {
            assert!(cfg.contains(secret), "the config file lacks {secret}");
        }
    }

    #[test]
    fn platform_settings_win_over_tenant_ones() {
        let (mut spec, secrets, layout, ports, backends) = fixture();
        spec.airflow_config_overrides
            .insert("core.executor".into(), "LocalExecutor".into());
        spec.env_vars
            .insert("AIRFLOW__CORE__FERNET_KEY".into(), "mine".into());
        let env = airflow_env(&spec, &layout, ports, &backends);
        assert_eq!(env["AIRFLOW__CORE__EXECUTOR"], "CeleryExecutor");
        assert!(!env.contains_key("AIRFLOW__CORE__FERNET_KEY"));
        assert!(airflow_cfg(&secrets, &backends).contains("fernet_key = FERNET\n"));
        assert_eq!(env["AIRFLOW__CORE__PARALLELISM"], "64");
        assert_eq!(env["TEAM"], "data");
    }

    #[test]
    fn zero_workers_is_a_valid_idle_environment() {
        let (spec, secrets, layout, ports, backends) = fixture();
        let bp = blueprint(&spec, &secrets, &layout, ports, &backends, 0);
        assert!(bp.processes.iter().all(|p| p.kind != ComponentKind::Worker));
        assert_eq!(bp.processes.len(), 1 + 2 + 1 + 1);
    }

    #[test]
    fn a_class_change_changes_only_the_workers() {
        let (spec, secrets, layout, ports, backends) = fixture();
        let mut bigger = spec.clone();
        bigger.environment_class = crate::spec::EnvironmentClass::Large;
        let a = blueprint(&spec, &secrets, &layout, ports, &backends, 1);
        let b = blueprint(&bigger, &secrets, &layout, ports, &backends, 1);
        let changed: Vec<&str> = a
            .processes
            .iter()
            .zip(&b.processes)
            .filter(|(x, y)| x != y)
            .map(|(x, _)| x.name.as_str())
            .collect();
        assert_eq!(changed, ["worker-0"]);
    }
}
