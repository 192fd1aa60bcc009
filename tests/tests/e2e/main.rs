//! End to end on this machine with real Postgres, Redis and Apache Airflow 3.3.2: environments
//! of two tenants created through the API, run by the agent's process runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

mod broker_gateway;
mod crash;
mod hibernation;
mod isolation;
mod log_disk;
mod logs;
mod mwaa;
mod task_pool;
mod tls;
mod tunnel;

use hangar_client::Client;
use hangar_tenants::api::{
    CreateEnvironment, EnvironmentSecrets, Role, RunAirflowCli, UpdateEnvironment,
};
use hangar_tenants::Phase;
use hangar_tests::dev::interrupt;
use hangar_tests::{airflow_api, spawn_stack, spawn_stack_with, wait_for_phase as wait_for, Stack};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const DAG: &str = r#"
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def where_am_i():
    @task
    def home():
        import os
        return os.environ["AIRFLOW_HOME"]

    home()


where_am_i()
"#;

/// A task long enough to be running while its worker is replaced.
const SLEEPY: &str = r#"
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def sleepy():
    @task
    def nap():
        import time
        time.sleep(25)
        return "rested"

    nap()


sleepy()
"#;

/// A call to the `etl` environment's Airflow API through Hangar.
async fn airflow(
    client: &Client,
    tenant: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    airflow_api(client, tenant, "etl", method, path, body).await
}

/// Waits for the DAG, unpauses it, triggers it and returns the task's XCom: the AIRFLOW_HOME of
/// the worker that ran it.
async fn run_dag(client: &Client, tenant: &str) -> String {
    let start = Instant::now();
    while airflow(client, tenant, Method::GET, "dags/where_am_i", None)
        .await
        .0
        != 200
    {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "DAG not listed in {tenant}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (s, _) = airflow(
        client,
        tenant,
        Method::PATCH,
        "dags/where_am_i",
        Some(json!({"is_paused": false})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, run) = airflow(
        client,
        tenant,
        Method::POST,
        "dags/where_am_i/dagRuns",
        Some(json!({"logical_date": null})),
    )
    .await;
    assert_eq!(s, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let (_, r) = airflow(
            client,
            tenant,
            Method::GET,
            &format!("dags/where_am_i/dagRuns/{run_id}"),
            None,
        )
        .await;
        match r["state"].as_str() {
            Some("success") => break,
            Some("failed") => panic!("the run failed in {tenant}: {r}"),
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "run not done in {tenant}: {r}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (_, x) = airflow(
        client,
        tenant,
        Method::GET,
        &format!("dags/where_am_i/dagRuns/{run_id}/taskInstances/home/xcomEntries/return_value"),
        None,
    )
    .await;
    x["value"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| x["value"].to_string())
}

async fn secrets_by_env(stack: &Stack) -> HashMap<Uuid, EnvironmentSecrets> {
    let a = stack
        .cell
        .assignments("local", 0, Duration::ZERO)
        .await
        .unwrap();
    a.environments
        .into_iter()
        .filter_map(|e| Some((e.id, e.secrets?)))
        .collect()
}

/// Running (a zombie is not: once an agent is gone, its orphaned children are reaped by
/// whatever PID 1 is, and some sandboxes' PID 1 never reaps).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

fn pids(stack: &Stack, env: Uuid) -> Vec<u32> {
    let run = stack.env_home(env).join("run");
    std::fs::read_dir(run)
        .map(|d| {
            d.flatten()
                .filter_map(|f| {
                    std::fs::read_to_string(f.path())
                        .ok()?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_run_isolated_airflow_environments_end_to_end() {
    let stack = spawn_stack().await.unwrap();
    let alpha = stack
        .app
        .tenant_with_role("alpha", Role::Editor)
        .await
        .unwrap();
    let beta = stack
        .app
        .tenant_with_role("beta", Role::Editor)
        .await
        .unwrap();
    let env = CreateEnvironment {
        name: "etl".into(),
        min_workers: Some(1),
        ..Default::default()
    };
    // Alpha's memory limit is its class's: micro with one worker, 3 GiB (its memory hog below).
    let env_a = CreateEnvironment {
        environment_class: Some(hangar_tenants::EnvironmentClass::Micro),
        max_workers: Some(1),
        ..env.clone()
    };
    let a = alpha
        .create_environment("alpha", &env_a, None)
        .await
        .unwrap()
        .environment;
    let b = beta
        .create_environment("beta", &env, None)
        .await
        .unwrap()
        .environment;
    let (ea, eb) = tokio::join!(
        wait_for(
            &alpha,
            "alpha",
            "etl",
            Phase::Available,
            Duration::from_secs(300)
        ),
        wait_for(
            &beta,
            "beta",
            "etl",
            Phase::Available,
            Duration::from_secs(300)
        ),
    );
    assert!(ea
        .webserver_url
        .unwrap()
        .ends_with("/environments/etl/airflow/"));
    assert_eq!(eb.observed.unwrap().revision, Some(1));

    // DAGs through the API, run on each environment's own worker.
    for (c, t) in [(&alpha, "alpha"), (&beta, "beta")] {
        let r = c
            .request(
                Method::PUT,
                &format!("v1/tenants/{t}/environments/etl/dags/where_am_i.py"),
            )
            .body(DAG)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let (home_a, home_b) = tokio::join!(run_dag(&alpha, "alpha"), run_dag(&beta, "beta"));
    assert_eq!(
        home_a,
        stack.env_home(a.id).display().to_string(),
        "alpha's task ran on alpha's worker"
    );
    assert_eq!(
        home_b,
        stack.env_home(b.id).display().to_string(),
        "beta's task ran on beta's worker"
    );
    // An environment's whole life through the MWAA-compatible API, as MWAA's users live it.
    mwaa::lifecycle(&stack, "alpha", DAG).await;

    // Hangar's roles are Airflow's there (viewer → viewer, editor → op): a viewer reads, and its
    // changes reach Airflow, whose own role check refuses them (Airflow's 403, not a Hangar
    // problem); an editor's go through. Another tenant cannot reach the environment at all.
    let viewer = stack
        .app
        .tenant_with_role("alpha", Role::Viewer)
        .await
        .unwrap();
    assert_eq!(
        airflow(&viewer, "alpha", Method::GET, "dags", None).await.0,
        200
    );
    let writes = [
        (
            Method::POST,
            "dags/where_am_i/dagRuns",
            json!({"logical_date": null}),
        ),
        (
            Method::PATCH,
            "dags/where_am_i",
            json!({"is_paused": false}),
        ),
        (
            Method::POST,
            "variables",
            json!({"key": "hangar_e2e", "value": "set by an editor"}),
        ),
    ];
    for (method, path, body) in &writes {
        let r = viewer
            .request(
                method.clone(),
                &format!("v1/tenants/alpha/environments/etl/airflow/api/v2/{path}"),
            )
            .json(body)
            .send()
            .await
            .unwrap();
        let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
        let (status, answer): (u16, Value) = (r.status().as_u16(), r.json().await.unwrap());
        assert_eq!(status, 403, "a viewer's {method} {path}: {answer}");
        assert_eq!(kind, "application/json", "Airflow's own answer: {answer}");
        assert!(
            answer.get("type").is_none(),
            "not a Hangar problem: {answer}"
        );
        let (status, answer) =
            airflow(&alpha, "alpha", method.clone(), path, Some(body.clone())).await;
        assert!(
            (200..300).contains(&status),
            "an editor's {method} {path}: {status} {answer}"
        );
    }
    let (status, var) = airflow(&viewer, "alpha", Method::GET, "variables/hangar_e2e", None).await;
    assert_eq!(
        status, 403,
        "Airflow's viewers do not read variables: {var}"
    );
    let (status, var) = airflow(&alpha, "alpha", Method::GET, "variables/hangar_e2e", None).await;
    assert_eq!((status, &var["value"]), (200, &json!("set by an editor")));
    assert_eq!(
        airflow(&beta, "alpha", Method::GET, "dags", None).await.0,
        404
    );

    // The Airflow UI in a browser: a web login token opens a session cookie, with which the
    // UI's page, its assets and the API it calls all come through Hangar's proxy.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = alpha.web_login_token("alpha", "etl").await.unwrap();
    let r = browser
        .get(format!("{}{}", stack.app.address, login.login_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let ui = |path: &str| {
        browser
            .get(format!(
                "{}{}{path}",
                stack.app.address, login.webserver_url
            ))
            .header("cookie", &cookie)
            .send()
    };
    let page = ui("").await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<base href="/v1/tenants/alpha/environments/etl/airflow/""#),
        "the UI's links stay inside the proxy: {html}"
    );
    let script = html
        .split(r#"src="./"#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page loads a script");
    let js = ui(script).await.unwrap();
    assert_eq!(js.status(), 200, "{script}");
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    assert_eq!(ui("ui/config").await.unwrap().status(), 200);
    let dags: Value = ui("api/v2/dags").await.unwrap().json().await.unwrap();
    assert_eq!(dags["dags"][0]["dag_id"], "where_am_i", "{dags}");
    let anonymous = browser
        .get(format!("{}{}", stack.app.address, login.webserver_url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401, "no session, no UI");

    // A DAG that fails to import is reported with its file and reason; the others keep running.
    let r = alpha
        .request(
            Method::PUT,
            "v1/tenants/alpha/environments/etl/dags/broken.py",
        )
        // (Airflow's safe mode parses only files that mention both "airflow" and "dag".)
        .body("from airflow.sdk import dag\nimport no_such_module_hangar_e2e\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let start = Instant::now();
    let errors = loop {
        let list = alpha.import_errors("alpha", "etl").await.unwrap();
        if !list.import_errors.is_empty() {
            break list.import_errors;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no import error reported"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(errors[0].file, "broken.py", "{errors:?}");
    assert!(
        errors[0].message.contains("no_such_module_hangar_e2e"),
        "{errors:?}"
    );
    // The CLI prints one line per file, ending with the reason.
    let token = stack
        .app
        .admin
        .create_token(
            "alpha",
            &hangar_tenants::api::CreateToken {
                name: "cli".into(),
                role: Role::Viewer,
            },
        )
        .await
        .unwrap()
        .token;
    let out = std::process::Command::new(hangar_bin())
        .args(["env", "import-errors", "etl", "--tenant", "alpha"])
        .env("HANGAR_URL", &stack.app.address)
        .env("HANGAR_TOKEN", token)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.starts_with("broken.py: ") && printed.contains("no_such_module_hangar_e2e"),
        "{printed}"
    );
    assert_eq!(
        run_dag(&alpha, "alpha").await,
        stack.env_home(a.id).display().to_string()
    );

    // Debugging: an allow-listed Airflow CLI command runs in alpha's own runtime and database;
    // a command off the list is refused before anything runs; beta cannot reach alpha's.
    let listed = alpha
        .run_airflow_cli(
            "alpha",
            "etl",
            &RunAirflowCli {
                args: ["dags", "list", "--output", "json"]
                    .map(String::from)
                    .to_vec(),
                timeout_seconds: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.exit_code, Some(0), "{listed:?}");
    assert!(
        listed.stdout.contains("where_am_i")
            && listed
                .stdout
                .contains(&stack.env_home(a.id).display().to_string()),
        "alpha's DAG from alpha's folder: {}",
        listed.stdout
    );
    let refused = alpha
        .run_airflow_cli(
            "alpha",
            "etl",
            &RunAirflowCli {
                args: ["db", "reset", "--yes"].map(String::from).to_vec(),
                timeout_seconds: None,
            },
        )
        .await;
    assert!(
        matches!(&refused, Err(hangar_client::ClientError::Api { problem }) if problem.status == 422 && problem.errors[0].field == "args[0]"),
        "{refused:?}"
    );
    let foreign = beta
        .run_airflow_cli(
            "alpha",
            "etl",
            &RunAirflowCli {
                args: ["dags", "list"].map(String::from).to_vec(),
                timeout_seconds: None,
            },
        )
        .await;
    assert!(
        matches!(&foreign, Err(hangar_client::ClientError::Api { problem }) if problem.status == 404),
        "{foreign:?}"
    );
    // `hangar airflow` prints the command's output and exits with its code.
    let editor_token = stack
        .app
        .admin
        .create_token(
            "alpha",
            &hangar_tenants::api::CreateToken {
                name: "cli-editor".into(),
                role: Role::Editor,
            },
        )
        .await
        .unwrap()
        .token;
    let hangar_airflow = |args: &[&str]| {
        std::process::Command::new(hangar_bin())
            .args(["airflow", "etl", "--tenant", "alpha", "--"])
            .args(args)
            .env("HANGAR_URL", &stack.app.address)
            .env("HANGAR_TOKEN", &editor_token)
            .output()
            .unwrap()
    };
    let out = hangar_airflow(&["version"]);
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        (Some(0), "3.3.2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hangar_airflow(&["dags", "state", "no_such_dag_hangar", "2024-01-01"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a failing command fails the CLI"
    );

    // Isolation with the credentials each environment was given.
    let secrets = secrets_by_env(&stack).await;
    let (sa, sb) = (&secrets[&a.id], &secrets[&b.id]);
    let pg = url::Url::parse(&stack.postgres_admin).unwrap();
    let as_role = |role: Uuid, pw: &str, db: Uuid| {
        format!(
            "postgres://env_{}:{pw}@127.0.0.1:{}/env_{}",
            role.simple(),
            pg.port().unwrap(),
            db.simple()
        )
    };
    use sqlx::Connection;
    sqlx::PgConnection::connect(&as_role(a.id, &sa.db_password, a.id))
        .await
        .expect("A reaches its own database");
    let err = sqlx::PgConnection::connect(&as_role(a.id, &sa.db_password, b.id))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    let redis_a = redis::Client::open(format!(
        "redis://env-{}:{}@127.0.0.1:{}/0",
        a.id.simple(),
        sa.broker_password,
        stack.redis_port
    ))
    .unwrap();
    let mut ca = redis_a.get_multiplexed_async_connection().await.unwrap();
    let denied = redis::cmd("LRANGE")
        .arg(format!("hangar:{}:default", b.id.simple()))
        .arg(0)
        .arg(-1)
        .query_async::<Vec<String>>(&mut ca)
        .await;
    assert!(
        matches!(&denied, Err(e) if e.to_string().to_ascii_uppercase().contains("NOPERM")),
        "{denied:?}"
    );
    let _ = sb;

    // A hostile task of alpha reaches nothing of beta or the platform; a memory hog of alpha is
    // killed inside alpha while beta runs a DAG.
    isolation::a_hostile_task_reaches_nothing_of_another_tenant_or_the_platform(
        &stack, &alpha, a.id, b.id,
    )
    .await;
    isolation::a_memory_hog_is_killed_inside_its_environment(
        &stack,
        &alpha,
        a.id,
        run_dag(&beta, "beta"),
    )
    .await;

    // kill -9 a scheduler: it is restarted and the environment is AVAILABLE again.
    let sched_file = stack.env_home(a.id).join("run/scheduler-0.pid");
    let old: i32 = std::fs::read_to_string(&sched_file)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    nix_kill(old);
    let start = Instant::now();
    loop {
        let now: i32 = std::fs::read_to_string(&sched_file)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(old);
        if now != old && alive(now as u32) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "scheduler not restarted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_for(
        &alpha,
        "alpha",
        "etl",
        Phase::Available,
        Duration::from_secs(120),
    )
    .await;

    // A requirement that does not exist fails the update with uv's message; the previous
    // revision keeps running and still runs DAGs.
    let bad = UpdateEnvironment {
        requirements: Some("no-such-package-hangar-e2e==0\n".into()),
        ..Default::default()
    };
    beta.update_environment("beta", "etl", &bad, None)
        .await
        .unwrap();
    let failed = wait_for(
        &beta,
        "beta",
        "etl",
        Phase::UpdateFailed,
        Duration::from_secs(120),
    )
    .await;
    assert!(
        failed
            .status_message
            .as_deref()
            .unwrap_or("")
            .contains("no-such-package-hangar-e2e"),
        "{:?}",
        failed.status_message
    );
    assert_eq!(failed.observed.unwrap().revision, Some(1));
    assert_eq!(
        run_dag(&beta, "beta").await,
        stack.env_home(b.id).display().to_string()
    );

    // A class change restarts only the worker, and gracefully: the old worker finishes the task
    // it is running (first try, not a retry) while its successor already takes new work.
    let r = beta
        .request(
            Method::PUT,
            "v1/tenants/beta/environments/etl/dags/sleepy.py",
        )
        .body(SLEEPY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let start = Instant::now();
    while airflow(&beta, "beta", Method::GET, "dags/sleepy", None)
        .await
        .0
        != 200
    {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "sleepy not listed"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    airflow(
        &beta,
        "beta",
        Method::PATCH,
        "dags/sleepy",
        Some(json!({"is_paused": false})),
    )
    .await;
    let (_, run) = airflow(
        &beta,
        "beta",
        Method::POST,
        "dags/sleepy/dagRuns",
        Some(json!({"logical_date": null})),
    )
    .await;
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    let ti = format!("dags/sleepy/dagRuns/{run_id}/taskInstances/nap");
    let start = Instant::now();
    loop {
        let (_, t) = airflow(&beta, "beta", Method::GET, &ti, None).await;
        if t["state"] == "running" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "nap not running: {t}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let home_b = stack.env_home(b.id);
    let pid_of = |name: &str| -> u32 {
        std::fs::read_to_string(home_b.join(format!("run/{name}.pid")))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (api_before, worker_before) = (pid_of("api-server"), pid_of("worker-0"));
    let bigger = UpdateEnvironment {
        requirements: Some(String::new()),
        environment_class: Some(hangar_tenants::EnvironmentClass::Medium),
        ..Default::default()
    };
    beta.update_environment("beta", "etl", &bigger, None)
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        if pid_of("worker-0") != worker_before {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "worker not replaced"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        alive(worker_before),
        "the old worker drains, it is not killed"
    );
    let e = wait_for(
        &beta,
        "beta",
        "etl",
        Phase::Available,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(e.observed.unwrap().revision, Some(3));
    let start = Instant::now();
    let done = loop {
        let (_, t) = airflow(&beta, "beta", Method::GET, &ti, None).await;
        if !matches!(
            t["state"].as_str(),
            Some("running" | "queued" | "scheduled")
        ) {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "nap never ended: {t}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(done["state"], "success", "{done}");
    assert_eq!(
        done["try_number"], 1,
        "finished by the old worker, not retried: {done}"
    );
    assert_eq!(
        pid_of("api-server"),
        api_before,
        "only the worker was restarted"
    );
    let start = Instant::now();
    while alive(worker_before) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the old worker did not exit"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Delete leaves no database, role, broker user, key, process or file behind.
    let running: Vec<u32> = pids(&stack, a.id)
        .into_iter()
        .chain(pids(&stack, b.id))
        .collect();
    // api-server, scheduler, dag-processor and a worker each (no trigger, so no triggerer).
    assert!(running.len() >= 8, "{running:?}");
    alpha.delete_environment("alpha", "etl").await.unwrap();
    beta.delete_environment("beta", "etl").await.unwrap();
    wait_for(
        &alpha,
        "alpha",
        "etl",
        Phase::Deleted,
        Duration::from_secs(120),
    )
    .await;
    wait_for(
        &beta,
        "beta",
        "etl",
        Phase::Deleted,
        Duration::from_secs(120),
    )
    .await;
    for pid in running {
        assert!(!alive(pid), "process {pid} survived the delete");
    }
    let mut admin = sqlx::PgConnection::connect(&stack.postgres_admin)
        .await
        .unwrap();
    for id in [a.id, b.id] {
        let name = format!("env_{}", id.simple());
        let dbs: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert_eq!((dbs, roles), (0, 0), "{name}");
        assert!(!stack.env_home(id).exists());
    }
    let mut redis_admin =
        redis::Client::open(secrecy::ExposeSecret::expose_secret(&stack.redis_admin))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
    let users: Vec<String> = redis::cmd("ACL")
        .arg("USERS")
        .query_async(&mut redis_admin)
        .await
        .unwrap();
    assert!(users.iter().all(|u| !u.starts_with("env-")), "{users:?}");
    let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg("hangar:*")
        .arg("COUNT")
        .arg(10000)
        .query_async(&mut redis_admin)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    stack.shutdown().await;
}

fn nix_kill(pid: i32) {
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
}

/// target/<profile>/hangar, next to this test's own executable in target/<profile>/deps.
fn hangar_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("hangar")
}

fn start_agent(stack: &Stack) -> std::process::Child {
    start_agent_with(stack, &[])
}

/// `hangar agent` for the stack's cell, with extra environment variables.
fn start_agent_with(stack: &Stack, extra: &[(&str, &str)]) -> std::process::Child {
    start_agent_at(stack, &stack.app.address, extra)
}

/// `hangar agent` for the stack's cell talking to the control plane at `url`; its log is
/// appended to the stack's `agent.log`.
fn start_agent_at(stack: &Stack, url: &str, extra: &[(&str, &str)]) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stack.dir.join("agent.log"))
        .unwrap();
    std::process::Command::new(hangar_bin())
        .arg("agent")
        .envs(extra.iter().copied())
        .env("HANGAR_URL", url)
        .env("HANGAR_CELL", "local")
        .env("HANGAR_CELL_TOKEN", &stack.cell_token)
        .env("HANGAR_AGENT_DIR", &stack.dir)
        .env("HANGAR_CGROUP_PARENT", &stack.cgroup_parent)
        .env("HANGAR_PLATFORM_POSTGRES_URL", &stack.postgres_admin)
        .env(
            "HANGAR_PLATFORM_REDIS_URL",
            secrecy::ExposeSecret::expose_secret(&stack.redis_admin),
        )
        .env(
            "HANGAR_BUCKET_URL",
            format!("file://{}", stack.bucket.display()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_survive_a_killed_agent_and_the_next_agent_adopts_them() {
    let stack = spawn_stack_with(false).await.unwrap();
    let editor = stack
        .app
        .tenant_with_role("gamma", Role::Editor)
        .await
        .unwrap();
    let mut first = start_agent(&stack);
    let env = CreateEnvironment {
        name: "etl".into(),
        ..Default::default()
    };
    let id = editor
        .create_environment("gamma", &env, None)
        .await
        .unwrap()
        .environment
        .id;
    wait_for(
        &editor,
        "gamma",
        "etl",
        Phase::Available,
        Duration::from_secs(300),
    )
    .await;
    let before = pids(&stack, id);
    assert_eq!(
        before.len(),
        3,
        "api-server, scheduler, dag-processor (no trigger, so no triggerer): {before:?}"
    );

    // kill -9 the agent: the environment keeps running.
    first.kill().unwrap();
    first.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        before.iter().all(|p| alive(*p)),
        "components died with the agent"
    );
    // Its Airflow is reached only over the tunnel the agent held open: a 503 that says so
    // until the next agent opens it again.
    stack.app.wait_for_tunnel("local", false).await;
    let (status, body) = airflow(&editor, "gamma", Method::GET, "dags", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("has no tunnel open to the control plane"),
        "{body}"
    );

    // The next agent adopts the same processes instead of starting new ones.
    let mut second = start_agent(&stack);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let e = wait_for(
        &editor,
        "gamma",
        "etl",
        Phase::Available,
        Duration::from_secs(60),
    )
    .await;
    assert!(e.observed.unwrap().components.iter().all(|c| c.healthy));
    // Its Airflow answers again once the next agent serves it over its tunnel (a 503 saying
    // so until it has taken the environment up).
    let start = Instant::now();
    loop {
        let (status, body) = airflow(&editor, "gamma", Method::GET, "dags", None).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not served by the next agent: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut after = pids(&stack, id);
    let mut expected = before.clone();
    after.sort_unstable();
    expected.sort_unstable();
    assert_eq!(after, expected, "adopted, not restarted");

    // And it still manages them: delete removes everything.
    editor.delete_environment("gamma", "etl").await.unwrap();
    wait_for(
        &editor,
        "gamma",
        "etl",
        Phase::Deleted,
        Duration::from_secs(120),
    )
    .await;
    assert!(before.iter().all(|p| !alive(*p)));
    second.kill().unwrap();
    second.wait().unwrap();
}

/// Processes whose command line mentions `dir`: everything `hangar dev` started there (its
/// Postgres and Redis, every Airflow component of its environments), zombies aside.
fn processes_under(dir: &std::path::Path) -> Vec<(u32, String)> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| alive(*pid))
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&needle).then_some((pid, cmd))
        })
        .collect()
}

/// The parent cgroup of `hangar dev` in these tests (removed after them).
const DEV_CGROUP_PARENT: &str = "hangar-e2e-dev";

/// Starts `hangar dev` on `dir`; returns it with an admin client.
async fn start_dev(dir: &std::path::Path) -> (std::process::Child, Client) {
    let dev = hangar_tests::dev::start(dir, DEV_CGROUP_PARENT).await;
    (dev.child, dev.admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangar_dev_stops_cleanly_and_brings_its_environments_back() {
    let dir = std::env::temp_dir().join(format!("hangar-dev-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (child, admin) = start_dev(&dir).await;
    admin
        .create_tenant(&hangar_tenants::api::CreateTenant {
            name: "demo".into(),
            display_name: None,
        })
        .await
        .unwrap();
    // `hangar dev` keeps one environment prepared.
    let start = Instant::now();
    loop {
        let cells = admin.list_cells().await.unwrap().cells;
        if cells.iter().any(|c| c.warm_pool == 1 && c.warm_ready == 1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no prepared environment: {cells:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Custom requirements: not the prepared one's runtime, so the normal path (where this
    // requirement cannot install).
    let custom = CreateEnvironment {
        name: "ml".into(),
        requirements: Some("no-such-package-hangar-e2e==0\n".into()),
        ..Default::default()
    };
    let ml = admin
        .create_environment("demo", &custom, None)
        .await
        .unwrap()
        .environment;
    assert_eq!(
        (ml.revision, ml.webserver_url.as_deref()),
        (1, Some("/v1/tenants/demo/environments/ml/airflow/"))
    );
    wait_for(
        &admin,
        "demo",
        "ml",
        Phase::CreateFailed,
        Duration::from_secs(300),
    )
    .await;
    admin.delete_environment("demo", "ml").await.unwrap();

    // The prepared one's processes, by their pid files: the only environment running now.
    let pids = |home: &std::path::Path| -> Vec<(String, String)> {
        ["api-server", "scheduler-0", "dag-processor"]
            .into_iter()
            .map(|n| {
                let pid = std::fs::read_to_string(home.join(format!("run/{n}.pid")));
                (n.to_owned(), pid.unwrap_or_default())
            })
            .collect()
    };
    let prepared: Vec<_> = std::fs::read_dir(dir.join("envs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("run/api-server.pid").exists())
        .collect();
    assert_eq!(prepared.len(), 1, "{prepared:?}");
    let before = pids(&prepared[0]);

    // A default create takes the prepared one over: up at once, under a path named by its id.
    let env = CreateEnvironment {
        name: "etl".into(),
        ..Default::default()
    };
    let asked = Instant::now();
    let created = admin
        .create_environment("demo", &env, None)
        .await
        .unwrap()
        .environment;
    let id = created.id;
    assert_ne!(id, ml.id);
    assert_eq!(
        created.revision, 2,
        "a prepared environment's next revision"
    );
    let path = format!("/v1/environments/{}/airflow/", id.simple());
    assert_eq!(created.webserver_url.as_deref(), Some(path.as_str()));
    wait_for(
        &admin,
        "demo",
        "etl",
        Phase::Available,
        Duration::from_secs(300),
    )
    .await;
    eprintln!(
        "claimed a prepared environment: AVAILABLE {:?} after the create",
        asked.elapsed()
    );
    let home = dir.join("envs").join(id.simple().to_string());
    assert_eq!(home, prepared[0]);
    assert_eq!(pids(&home), before, "a claim restarts nothing");
    assert!(before.iter().all(|(_, pid)| !pid.is_empty()), "{before:?}");

    // It has no past: no DAG, no run, no import error, and Airflow's audit log holds only its
    // own components' starts.
    for list in ["dags", "dags/~/dagRuns", "importErrors"] {
        let (status, body) = airflow(&admin, "demo", Method::GET, list, None).await;
        assert_eq!(
            (status, &body["total_entries"]),
            (200, &json!(0)),
            "{list}: {body}"
        );
    }
    let (status, events) = airflow(&admin, "demo", Method::GET, "eventLogs", None).await;
    assert_eq!(status, 200, "{events}");
    for e in events["event_logs"].as_array().unwrap() {
        assert!(e["dag_id"].is_null(), "{e}");
        assert!(e["event"].as_str().unwrap().starts_with("cli_"), "{e}");
    }

    // The cell prepares the next one in the background (waited for here, so the DAG below does
    // not share this machine's two cores with a starting Airflow).
    let start = Instant::now();
    loop {
        let cells = admin.list_cells().await.unwrap().cells;
        if cells.iter().any(|c| c.warm_ready == 1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the pool did not refill: {cells:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // It runs a DAG from its bucket prefix, and answers under its id-named path too.
    let r = admin
        .request(
            Method::PUT,
            "v1/tenants/demo/environments/etl/dags/where_am_i.py",
        )
        .body(DAG)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(run_dag(&admin, "demo").await, home.display().to_string());
    let r = admin
        .request(
            Method::GET,
            &format!("{}api/v2/dags/where_am_i", path.trim_start_matches('/')),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Ctrl-C stops everything it started: environments, Redis, Postgres.
    let status = interrupt(child);
    assert!(status.success(), "hangar dev exited with {status}");
    let start = Instant::now();
    loop {
        let left = processes_under(&dir);
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "left running after Ctrl-C: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Started again on the same folder: same environment, first reported stopped (not the
    // stale AVAILABLE of before), then running again.
    let (child, admin) = start_dev(&dir).await;
    let e = admin.get_environment("demo", "etl").await.unwrap();
    assert_eq!(e.id, id);
    assert_ne!(
        e.phase,
        Phase::Available,
        "a stopped environment must not look available: {:?}",
        e.status_message
    );
    let e = wait_for(
        &admin,
        "demo",
        "etl",
        Phase::Available,
        Duration::from_secs(180),
    )
    .await;
    assert!(e.observed.unwrap().components.iter().all(|c| c.healthy));
    let (status, _) = airflow(&admin, "demo", Method::GET, "dags", None).await;
    assert_eq!(status, 200);

    // Killed (SIGKILL) while a task runs: what it started keeps running, and the next
    // `hangar dev` on the folder takes all of it over, restarting nothing. The task ends
    // well on its first try.
    use hangar_tests::runs::{deploy, run_state, task_instances, trigger};
    deploy(&admin, "demo", "etl", "long_nap", LONG_NAP).await;
    let run = trigger(&admin, "demo", "etl", "long_nap").await;
    let start = Instant::now();
    while task_instances(&admin, "demo", "etl", "long_nap", &run).await[0]["state"] != "running" {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the nap never ran"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let servers = |dir: &std::path::Path| {
        [
            dir.join("postgres/data/postmaster.pid"),
            dir.join("redis/redis.pid"),
        ]
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
    };
    let (components, platform) = (pids(&home), servers(&dir));
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
    let (child, admin) = start_dev(&dir).await;
    let start = Instant::now();
    loop {
        match run_state(&admin, "demo", "etl", "long_nap", &run)
            .await
            .as_str()
        {
            "success" => break,
            "failed" => panic!(
                "{:#?}",
                task_instances(&admin, "demo", "etl", "long_nap", &run).await
            ),
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the nap never ended"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let tis = task_instances(&admin, "demo", "etl", "long_nap", &run).await;
    assert_eq!(tis[0]["try_number"], 1, "{tis:#?}");
    wait_for(
        &admin,
        "demo",
        "etl",
        Phase::Available,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(pids(&home), components, "the same components, none doubled");
    assert_eq!(servers(&dir), platform, "the same Postgres and Redis");
    assert!(interrupt(child).success());
    let start = Instant::now();
    while !processes_under(&dir).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "left running");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let redis = std::fs::read_to_string(dir.join("redis/redis.pid")).unwrap_or_default();
    assert!(
        redis.trim().parse::<u32>().map_or(true, |p| !alive(p)),
        "Redis left running"
    );
    hangar_tests::remove_environment_users_and_cgroups(&dir, DEV_CGROUP_PARENT);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(dir.with_extension("log"));
}

/// One task that sleeps 30 s.
const LONG_NAP: &str = r#"
import time
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def long_nap():
    @task
    def nap():
        time.sleep(30)

    nap()


long_nap()
"#;
