//! `soak`: the whole platform left running under steady use for `--minutes`, to show whether
//! it holds up over time. The control plane (`hangar serve`) and the agent (`hangar agent`) of
//! this build run as processes of their own beside the stack's private Postgres and Redis;
//! `--environments` real Airflow environments run a DAG every minute; `--clients` API clients
//! read and write all along. Every minute (a window) it samples the API's latency and errors,
//! and the control plane's and the agent's memory, descriptors and threads; at the end it
//! counts the DAG runs, deletes everything, stops the agent and looks for what was left.

#[path = "soak_load.rs"]
mod load;
#[path = "soak_procs.rs"]
mod procs;
#[path = "soak_report.rs"]
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hangar_client::Client;
use hangar_tenants::api::{
    CreateCell, CreateEnvironment, CreateTenant, CreateToken, Role, Runtime,
};
use hangar_tenants::{Executor, Phase};
use reqwest::Method;
use serde_json::{json, Value};

use super::{ms, wait_phase};
pub use report::soak_markdown;
use report::{Runs, Window};

/// The tenant of every environment and client (`wait_phase` reads this tenant's).
pub const TENANT: &str = "bench";
/// One window of samples.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Every minute: a task sleeping 3 s that returns a value, and one that checks it from XCom.
const DAG: &str = r#"from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule="* * * * *", start_date=datetime(2024, 1, 1), catchup=False)
def soak():
    @task
    def nap():
        import time

        time.sleep(3)
        return 42

    @task
    def check(value):
        assert value == 42, value

    check(nap())


soak()
"#;

pub struct Params {
    pub minutes: u32,
    pub environments: u32,
    pub clients: u32,
}

fn executor_name(e: Executor) -> &'static str {
    match e {
        Executor::Hangar => "hangar",
        _ => "celery",
    }
}

/// A call of `env`'s Airflow REST API through Hangar: status and JSON body.
async fn airflow(
    c: &Client,
    env: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut rb = c.request(
        method,
        &format!("v1/tenants/{TENANT}/environments/{env}/airflow/api/v2/{path}"),
    );
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// Uploads the soak DAG to `env`, waits until its Airflow lists it and unpauses it.
async fn deploy(c: &Client, env: &str) -> anyhow::Result<()> {
    let r = c
        .request(
            Method::PUT,
            &format!("v1/tenants/{TENANT}/environments/{env}/dags/soak.py"),
        )
        .body(DAG)
        .send()
        .await?;
    anyhow::ensure!(
        r.status().is_success(),
        "upload of soak.py to {env}: {}",
        r.status()
    );
    let start = Instant::now();
    while airflow(c, env, Method::GET, "dags/soak", None).await?.0 != 200 {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(180),
            "{env}: DAG soak not listed after 180 s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (s, body) = airflow(
        c,
        env,
        Method::PATCH,
        "dags/soak",
        Some(json!({"is_paused": false})),
    )
    .await?;
    anyhow::ensure!(s == 200, "{env}: unpausing soak: {s} {body}");
    Ok(())
}

async fn dag_runs(
    c: &Client,
    env: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Runs> {
    let mut runs = Runs {
        due: to.timestamp().div_euclid(60) - from.timestamp().div_euclid(60),
        ..Runs::default()
    };
    let mut offset = 0;
    loop {
        let path = format!("dags/soak/dagRuns?limit=100&offset={offset}&order_by=run_after");
        let (s, page) = airflow(c, env, Method::GET, &path, None).await?;
        anyhow::ensure!(s == 200, "{env}: listing DAG runs: {s} {page}");
        let list = page["dag_runs"].as_array().cloned().unwrap_or_default();
        for r in &list {
            match r["state"].as_str() {
                Some("success") => runs.success += 1,
                Some("failed") => runs.failed += 1,
                _ => runs.unfinished += 1,
            }
            let at = |k: &str| r[k].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok());
            if let (Some(due), Some(started)) = (at("run_after"), at("start_date")) {
                // Not the run Airflow starts at the unpause for the minute just past: it was
                // due before the DAG could run.
                if r["run_type"] == "scheduled" && due > from {
                    runs.late
                        .push((started - due).num_milliseconds() as f64 / 1000.0);
                }
            }
        }
        offset += list.len();
        let total = page["total_entries"].as_u64().unwrap_or(0) as usize;
        if list.is_empty() || offset >= total {
            return Ok(runs);
        }
    }
}

async fn tenant_token(admin: &Client, name: &str) -> anyhow::Result<String> {
    Ok(admin
        .create_token(
            TENANT,
            &CreateToken {
                name: name.to_owned(),
                role: Role::Admin,
            },
        )
        .await?
        .token)
}

pub async fn bench_soak(p: &Params) -> anyhow::Result<Vec<Value>> {
    let stack = hangar_tests::spawn_stack_opts(hangar_tests::StackOptions {
        with_agent: false,
        ..Default::default()
    })
    .await?;
    // The stack gives the private Postgres, Redis, bucket, folder and clean-up; its
    // in-process control plane goes unused (this benchmark's is `hangar serve`).
    stack.app.stop();
    let logs = std::env::temp_dir().join(format!("hangar-bench-soak-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    eprintln!("control plane and agent logs: {}", logs.display());
    let (mut cp, address, admin) = procs::start_control_plane(&stack, &logs).await?;
    admin
        .create_tenant(&CreateTenant {
            name: TENANT.into(),
            display_name: None,
        })
        .await?;
    let cell = admin
        .create_cell(&CreateCell {
            name: "local".into(),
            runtime: Runtime::Process,
        })
        .await?;
    let mut agent = procs::start_agent(&stack, &address, &cell.token, &logs)?;
    procs::kill_after_exit(&[&cp, &agent])?;
    let editor = admin.with_token(tenant_token(&admin, "setup").await?);

    // Alternately the default Celery executor and the cell's task pool.
    let envs: Vec<(String, Executor)> = (0..p.environments)
        .map(|i| {
            let executor = if i % 2 == 0 {
                Executor::Celery
            } else {
                Executor::Hangar
            };
            (format!("soak-{i}"), executor)
        })
        .collect();
    let setup = Instant::now();
    for (name, executor) in &envs {
        editor
            .create_environment(
                TENANT,
                &CreateEnvironment {
                    name: name.clone(),
                    executor: Some(*executor),
                    // Busy every minute anyway; never asleep, so nothing but the soak varies.
                    hibernate_after_idle_minutes: Some(0),
                    ..Default::default()
                },
                None,
            )
            .await?;
    }
    for (name, _) in &envs {
        wait_phase(&editor, name, Phase::Available).await?;
    }
    for (name, _) in &envs {
        deploy(&editor, name).await?;
    }
    let unpaused = Utc::now();
    let setup_s = (setup.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    eprintln!(
        "{} environments available with their DAG unpaused after {setup_s} s; soaking for {} minutes",
        envs.len(),
        p.minutes
    );

    let recorder = load::Recorder::shared();
    let names = Arc::new(envs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>());
    let n = p.clients as usize;
    let mut clients = Vec::new();
    for i in 0..n {
        // One connection pool per client, as a real client keeps.
        let token = tenant_token(&admin, &format!("client-{i}")).await?;
        clients.push(hangar_tests::client(&address, Some(&token)));
    }
    let start = Instant::now();
    let end = start + WINDOW * p.minutes;
    let mut handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            tokio::spawn(load::client_loop(
                i,
                n,
                c,
                names.clone(),
                recorder.clone(),
                end,
            ))
        })
        .collect();
    let mut windows: Vec<Window> = Vec::new();
    for minute in 1..=p.minutes {
        tokio::time::sleep_until((start + WINDOW * minute).into()).await;
        if minute == p.minutes {
            // The last window also holds the requests in flight at the end.
            for h in std::mem::take(&mut handles) {
                h.await?;
            }
        }
        let tally = load::lock(&recorder).take_window();
        for (what, platform) in [("control plane", &mut cp), ("agent", &mut agent)] {
            if let Some(how) = platform.exited() {
                anyhow::bail!("the {what} exited during minute {minute}: {how}");
            }
        }
        let available = admin.list_environments(TENANT).await.ok().map(|l| {
            l.environments
                .iter()
                .filter(|e| e.phase == Phase::Available)
                .count()
        });
        let w = Window {
            minute,
            tally,
            control_plane: procs::usage(cp.pid()),
            agent: procs::usage(agent.pid()),
            processes: procs::processes_under(&stack.dir).len(),
            available,
        };
        eprintln!(
            "minute {minute}: {} requests ({} 5xx, {} unanswered), API p99 {} ms; control plane {} MB / {} fds, agent {} MB / {} fds; {} environment processes",
            w.tally.requests,
            w.tally.server_errors,
            w.tally.failed,
            ms(&w.tally.latency, 0.99),
            w.control_plane.rss_mb(),
            w.control_plane.fds,
            w.agent.rss_mb(),
            w.agent.fds,
            w.processes
        );
        windows.push(w);
    }
    let ended = Utc::now();

    let mut runs = Vec::new();
    for (name, executor) in &envs {
        let r = dag_runs(&editor, name, unpaused, ended).await?;
        eprintln!(
            "{name} ({}): {} runs succeeded, {} failed, {} unfinished of {} due",
            executor_name(*executor),
            r.success,
            r.failed,
            r.unfinished,
            r.due
        );
        runs.push(r);
    }

    // Everything deleted, then the agent stopped as an operator does: nothing may be left.
    let teardown = Instant::now();
    for (name, _) in &envs {
        editor.delete_environment(TENANT, name).await?;
    }
    for (name, _) in &envs {
        wait_phase(&editor, name, Phase::Deleted).await?;
    }
    let deleted_s = (teardown.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    let agent_exit = agent.stop(Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let left = procs::leftovers(&stack.dir, &stack.cgroup_parent);
    let cp_exit = cp.stop(Duration::from_secs(30)).await?;
    stack.shutdown().await;

    let rec = load::lock(&recorder);
    Ok(report::figures(report::Outcome {
        params: p,
        envs: &envs,
        setup_s,
        windows,
        runs,
        recorder: &rec,
        left,
        deleted_s,
        control_plane_exit: cp_exit,
        agent_exit,
    }))
}
