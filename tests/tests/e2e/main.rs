//! End to end on this machine with real Postgres, Redis and Apache Airflow 3.3.2: environments
//! of two tenants created through the API, run by the agent's process runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hangar_client::Client;
use hangar_tenants::api::{CreateEnvironment, EnvironmentSecrets, Role, UpdateEnvironment};
use hangar_tenants::Phase;
use hangar_tests::{spawn_stack, spawn_stack_with, Stack};
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

async fn wait_for(
    client: &Client,
    tenant: &str,
    env: &str,
    want: Phase,
    within: Duration,
) -> hangar_tenants::api::Environment {
    let start = Instant::now();
    loop {
        let e = client.get_environment(tenant, env).await.unwrap();
        if e.phase == want {
            return e;
        }
        assert!(
            start.elapsed() < within,
            "{tenant}/{env} is {} ({:?}) after {:?}, not {want}",
            e.phase,
            e.status_message,
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A call to the environment's Airflow API through Hangar.
async fn airflow(
    client: &Client,
    tenant: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = client.request(
        method,
        &format!("v1/tenants/{tenant}/environments/etl/airflow/api/v2/{path}"),
    );
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
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
    let a = alpha
        .create_environment("alpha", &env, None)
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

    // A viewer reads the Airflow API but cannot trigger; another tenant cannot reach it at all.
    let viewer = stack
        .app
        .tenant_with_role("alpha", Role::Viewer)
        .await
        .unwrap();
    assert_eq!(
        airflow(&viewer, "alpha", Method::GET, "dags", None).await.0,
        200
    );
    assert_eq!(
        airflow(
            &viewer,
            "alpha",
            Method::POST,
            "dags/where_am_i/dagRuns",
            Some(json!({"logical_date": null}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        airflow(&beta, "alpha", Method::GET, "dags", None).await.0,
        404
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

    // Delete leaves no database, role, broker user, key, process or file behind.
    let running: Vec<u32> = pids(&stack, a.id)
        .into_iter()
        .chain(pids(&stack, b.id))
        .collect();
    assert!(running.len() >= 10, "{running:?}");
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
    std::process::Command::new(hangar_bin())
        .arg("agent")
        .env("HANGAR_URL", &stack.app.address)
        .env("HANGAR_CELL", "local")
        .env("HANGAR_CELL_TOKEN", &stack.cell_token)
        .env("HANGAR_AGENT_DIR", &stack.dir)
        .env("HANGAR_PLATFORM_POSTGRES_URL", &stack.postgres_admin)
        .env(
            "HANGAR_PLATFORM_REDIS_URL",
            secrecy::ExposeSecret::expose_secret(&stack.redis_admin),
        )
        .env("HANGAR_BUCKET_DIR", &stack.bucket)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(stack.dir.join("agent.log")).unwrap())
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
        4,
        "api-server, scheduler, dag-processor, triggerer: {before:?}"
    );

    // kill -9 the agent: the environment keeps running.
    first.kill().unwrap();
    first.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        before.iter().all(|p| alive(*p)),
        "components died with the agent"
    );
    let (status, _) = airflow(&editor, "gamma", Method::GET, "dags", None).await;
    assert_eq!(status, 200, "Airflow answers without an agent");

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
