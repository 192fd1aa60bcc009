//! The process renderer's tests (see the module's declaration for why they are here).
#![allow(clippy::unwrap_used, clippy::panic)]
use super::*;
use crate::api::CreateEnvironment;
use crate::spec::{Executor, Platform};

/// The snapshots stay where they were before the split: `src/snapshots`.
fn snapshots_in_src() -> insta::internals::SettingsBindDropGuard {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.bind_to_scope()
}

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
    let _snapshots = snapshots_in_src();
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

#[test]
fn the_hangar_executor_runs_no_worker_and_tells_the_scheduler_its_socket() {
    let (mut spec, secrets, layout, ports, backends) = fixture();
    spec.executor = Executor::Hangar;
    let bp = blueprint(&spec, &secrets, &layout, ports, &backends, 3);
    assert!(bp.processes.iter().all(|p| p.kind != ComponentKind::Worker));
    let scheduler = bp
        .processes
        .iter()
        .find(|p| p.name == "scheduler-0")
        .unwrap();
    assert_eq!(scheduler.env["AIRFLOW__CORE__EXECUTOR"], HANGAR_EXECUTOR);
    assert_eq!(
        scheduler.env[TASK_POOL_SOCKET_VAR],
        layout.home.join("run/task-pool.sock").display().to_string()
    );
    // Its tasks get the same settings, but a settings file without secrets, and no socket.
    let task = bp.task_env.as_ref().unwrap();
    let cfg = layout.home.join("task.cfg");
    assert_eq!(task["AIRFLOW_CONFIG"], cfg.display().to_string());
    assert!(!task.contains_key(TASK_POOL_SOCKET_VAR));
    let mut rest = task.clone();
    rest.remove("AIRFLOW_CONFIG");
    let mut components = scheduler.env.clone();
    components.remove("AIRFLOW_CONFIG");
    components.remove(TASK_POOL_SOCKET_VAR);
    assert_eq!(rest, components);
    let (_, text) = bp.files.iter().find(|(p, _)| *p == cfg).unwrap();
    for secret in [
        &secrets.fernet_key,
        &secrets.jwt_secret,
        &secrets.api_secret_key,
        &backends.sql_alchemy_conn,
        &backends.broker_url,
    ] {
        assert!(!text.contains(secret.as_str()));
        assert!(task.values().all(|v| !v.contains(secret.as_str())));
    }
    // Celery environments never see the variable.
    let (spec, ..) = fixture();
    let bp = blueprint(&spec, &secrets, &layout, ports, &backends, 1);
    assert!(bp.task_env.is_none());
    assert!(bp
        .processes
        .iter()
        .all(|p| !p.env.contains_key(TASK_POOL_SOCKET_VAR)));
    assert_eq!(
        bp.processes[0].env["AIRFLOW__CORE__EXECUTOR"],
        "CeleryExecutor"
    );
}
