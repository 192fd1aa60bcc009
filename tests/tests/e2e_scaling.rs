//! Worker autoscaling on the process runtime with real Airflow, Postgres and Redis: scale to
//! zero and back, the shared pool split by weights, and scale-downs that never lose a task.
//!
//! Each test runs several environments and many Celery workers, so the tests of this binary
//! take turns ([`TURN`]) instead of sharing the machine's two cores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hangar_client::Client;
use hangar_tenants::api::{CreateEnvironment, Role};
use hangar_tenants::{EnvironmentClass, Phase, WorkerStatus};
use hangar_tests::runs::{self, deploy, task_instances, task_log, trigger};
use hangar_tests::{spawn_stack_opts, wait_for_phase, Stack, StackOptions};
use uuid::Uuid;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A DAG of `n` mapped tasks sleeping `secs` each.
fn naps(dag: &str, n: u32, secs: u32) -> String {
    format!(
        r#"
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="{dag}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_runs=50)
def naps():
    @task
    def nap(i):
        import time
        time.sleep({secs})
        return i

    nap.expand(i=list(range({n})))


naps()
"#
    )
}

async fn create(c: &Client, tenant: &str, req: CreateEnvironment) -> Uuid {
    c.create_environment(tenant, &req, None)
        .await
        .unwrap()
        .environment
        .id
}

fn env(name: &str) -> CreateEnvironment {
    CreateEnvironment {
        name: name.into(),
        ..Default::default()
    }
}

async fn workers(c: &Client, tenant: &str, env: &str) -> WorkerStatus {
    c.get_environment(tenant, env)
        .await
        .unwrap()
        .observed
        .and_then(|o| o.workers)
        .unwrap_or_default()
}

fn worker_pid_files(stack: &Stack, env: Uuid) -> usize {
    std::fs::read_dir(stack.env_home(env).join("run"))
        .map(|d| {
            d.flatten()
                .filter(|f| f.file_name().to_string_lossy().starts_with("worker-"))
                .count()
        })
        .unwrap_or(0)
}

async fn run_state(c: &Client, tenant: &str, env: &str, dag: &str, run: &str) -> String {
    let state = runs::run_state(c, tenant, env, dag, run).await;
    if state == "failed" {
        panic!(
            "{tenant}/{env} {dag} {run} failed\n{}",
            failed_task_logs(c, tenant, env, dag, run).await
        );
    }
    state
}

/// The failed tasks of a run with the end of each one's log, as Airflow serves it: what a
/// failed run's tasks said last.
async fn failed_task_logs(c: &Client, tenant: &str, env: &str, dag: &str, run: &str) -> String {
    let mut out = String::new();
    for t in task_instances(c, tenant, env, dag, run).await {
        if t["state"] == "success" {
            continue;
        }
        let text = task_log(c, tenant, env, dag, run, &t).await;
        let tail: String = text
            .chars()
            .rev()
            .take(3000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        out.push_str(&format!(
            "map {} {} try {} on {} pid {}: …{tail}\n",
            t["map_index"], t["state"], t["try_number"], t["hostname"], t["pid"]
        ));
    }
    out
}

/// The run's task instances that have not succeeded (map index; state, try, host, pid,
/// times), to say where a run that does not finish is stuck.
async fn unfinished_tasks(
    c: &Client,
    tenant: &str,
    env: &str,
    dag: &str,
    run: &str,
) -> Vec<(i64, String)> {
    task_instances(c, tenant, env, dag, run)
        .await
        .iter()
        .filter(|t| t["state"] != "success")
        .map(|t| {
            let line = format!(
                "{env} map {} {} try {} on {} pid {} queued {} started {}",
                t["map_index"],
                t["state"],
                t["try_number"],
                t["hostname"],
                t["pid"],
                t["queued_when"],
                t["start_date"]
            );
            (t["map_index"].as_i64().unwrap_or(-1), line)
        })
        .collect()
}

/// The last lines of the task logs of `map_indexes` (any try) and of the environment's
/// workers, retired ones included: what a stuck run's tasks and workers said last.
fn evidence(stack: &Stack, env: Uuid, dag: &str, map_indexes: &[i64]) -> String {
    fn tail(path: &std::path::Path, lines: usize) -> String {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let home = stack.env_home(env);
    let mut found = Vec::new();
    files(&home.join("logs").join(format!("dag_id={dag}")), &mut found);
    files(&home.join("components"), &mut found);
    found.sort();
    let mut out = String::new();
    for p in found {
        let shown = p.display().to_string();
        let task = map_indexes
            .iter()
            .any(|i| shown.contains(&format!("/map_index={i}/")));
        let worker = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("worker-"));
        if task || worker {
            out.push_str(&format!("==> {shown}\n{}\n", tail(&p, 25)));
        }
    }
    out
}

/// Asserts that every task instance of the run succeeded on its first try, and returns how
/// many there were.
async fn all_succeeded_once(c: &Client, tenant: &str, env: &str, dag: &str, run: &str) -> usize {
    let tis = task_instances(c, tenant, env, dag, run).await;
    for t in &tis {
        assert!(
            t["state"] == "success" && t["try_number"] == 1,
            "{tenant}/{env} {dag} {run}: task not a first-try success: {t}"
        );
    }
    tis.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_idle_environments_have_no_workers_and_a_burst_scales_one_up_and_back_to_zero() {
    let _turn = TURN.lock().await;
    let stack = spawn_stack_opts(StackOptions::default()).await.unwrap();
    let c = stack
        .app
        .tenant_with_role("delta", Role::Editor)
        .await
        .unwrap();
    let names = ["etl", "ml", "bi"];
    let mut ids = BTreeMap::new();
    for n in names {
        // Class micro: 3 tasks per worker, so the machine's two cores start at most a dozen
        // tasks at once (with 5 per worker, twenty starting at once under CI load once left
        // tasks failed or stuck running, every one on its first try).
        let req = CreateEnvironment {
            environment_class: Some(EnvironmentClass::Micro),
            ..env(n)
        };
        ids.insert(n, create(&c, "delta", req).await);
    }
    for n in names {
        wait_for_phase(&c, "delta", n, Phase::Available, Duration::from_secs(300)).await;
        assert_eq!(worker_pid_files(&stack, ids[n]), 0, "{n} idle: no worker");
    }

    deploy(&c, "delta", "etl", "burst", &naps("burst", 30, 3)).await;
    let run = trigger(&c, "delta", "etl", "burst").await;
    // 30 tasks, 3 per worker: etl's workers come up; the others stay at zero.
    let (mut most, start) = (0, Instant::now());
    while run_state(&c, "delta", "etl", "burst", &run).await != "success" {
        most = most.max(workers(&c, "delta", "etl").await.actual);
        for n in ["ml", "bi"] {
            assert_eq!(worker_pid_files(&stack, ids[n]), 0, "{n} stays at zero");
        }
        if start.elapsed() > Duration::from_secs(240) {
            let tis = unfinished_tasks(&c, "delta", "etl", "burst", &run).await;
            let indexes: Vec<i64> = tis.iter().map(|(i, _)| *i).collect();
            let lines: Vec<String> = tis.into_iter().map(|(_, line)| line).collect();
            let w = workers(&c, "delta", "etl").await;
            panic!(
                "burst not done after {:?} (most workers seen: {most}; now {w:?})\nunfinished: {lines:#?}\n{}",
                start.elapsed(),
                evidence(&stack, ids["etl"], "burst", &indexes)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(most >= 2, "the burst scaled etl up (most seen: {most})");
    assert_eq!(
        all_succeeded_once(&c, "delta", "etl", "burst", &run).await,
        30
    );

    // After the cooldown (5 s here), back to zero workers.
    let start = Instant::now();
    loop {
        let w = workers(&c, "delta", "etl").await;
        if w.actual == 0 && w.draining == 0 && worker_pid_files(&stack, ids["etl"]) == 0 {
            assert!(w.scale_downs >= 1, "{w:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "still {w:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversubscribed_pool_is_split_by_weight_after_each_guaranteed_minimum() {
    let _turn = TURN.lock().await;
    // 5 slots: `floor` is guaranteed 1; the other 4 go 3:1 to `big` and `small`, who each
    // want 4 (12 tasks, 3 per worker: class micro keeps the machine's load to 15 tasks at once).
    let stack = spawn_stack_opts(StackOptions {
        worker_slots: 5,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let c = stack
        .app
        .tenant_with_role("echo", Role::Editor)
        .await
        .unwrap();
    let micro = |name: &str| CreateEnvironment {
        environment_class: Some(EnvironmentClass::Micro),
        ..env(name)
    };
    let ids = BTreeMap::from([
        (
            "big",
            create(
                &c,
                "echo",
                CreateEnvironment {
                    worker_weight: Some(3),
                    ..micro("big")
                },
            )
            .await,
        ),
        ("small", create(&c, "echo", micro("small")).await),
    ]);
    create(
        &c,
        "echo",
        CreateEnvironment {
            min_workers: Some(1),
            ..micro("floor")
        },
    )
    .await;
    let names = ["big", "small", "floor"];
    for n in names {
        wait_for_phase(&c, "echo", n, Phase::Available, Duration::from_secs(300)).await;
    }
    for n in ["big", "small"] {
        deploy(&c, "echo", n, "spread", &naps("spread", 12, 10)).await;
    }
    let runs = [
        trigger(&c, "echo", "big", "spread").await,
        trigger(&c, "echo", "small", "spread").await,
    ];

    // The environments report one after another, so a reading can mix two ticks: a breach
    // counts only when it lasts (a real one lasts as long as the 10 s tasks).
    const LASTING: u32 = 6;
    let (mut split_seen, mut over, mut off_share, start) = (false, 0, 0, Instant::now());
    loop {
        let mut now = BTreeMap::new();
        for n in names {
            now.insert(n, workers(&c, "echo", n).await);
        }
        let held: u32 = now.values().map(|w| w.actual + w.draining).sum();
        over = if held > 5 { over + 1 } else { 0 };
        assert!(over < LASTING, "the pool holds 5 slots: {now:?}");
        if now["floor"].desired > 0 {
            assert!(now["floor"].actual >= 1, "floor's minimum: {now:?}");
        }
        if now["big"].queued > 0 && now["small"].queued > 0 {
            let desired: Vec<u32> = names.iter().map(|n| now[n].desired).collect();
            off_share = if desired == [3, 1, 1] {
                0
            } else {
                off_share + 1
            };
            assert!(off_share < LASTING, "shares while both wait: {now:?}");
            split_seen |= names.iter().map(|n| now[n].actual).eq([3, 1, 1]);
        }
        let mut done = 0;
        for (n, run) in ["big", "small"].iter().zip(&runs) {
            if run_state(&c, "echo", n, "spread", run).await == "success" {
                done += 1;
            }
        }
        if done == 2 {
            break;
        }
        if start.elapsed() >= Duration::from_secs(300) {
            let (mut stuck, mut logs) = (Vec::new(), String::new());
            for (n, run) in ["big", "small"].iter().zip(&runs) {
                let tis = unfinished_tasks(&c, "echo", n, "spread", run).await;
                let indexes: Vec<i64> = tis.iter().map(|(i, _)| *i).collect();
                if !indexes.is_empty() {
                    logs.push_str(&evidence(&stack, ids[*n], "spread", &indexes));
                }
                stuck.extend(tis.into_iter().map(|(_, line)| line));
            }
            panic!("runs not done: {now:?}\nunfinished: {stuck:#?}\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(split_seen, "workers ran at 3/1/1 while both waited");
    for (n, run) in ["big", "small"].iter().zip(&runs) {
        assert_eq!(all_succeeded_once(&c, "echo", n, "spread", run).await, 12);
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_scale_downs_with_long_tasks_in_flight_lose_no_task() {
    let _turn = TURN.lock().await;
    let stack = spawn_stack_opts(StackOptions {
        scale_down_cooldown: Duration::from_secs(2),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let c = stack
        .app
        .tenant_with_role("fox", Role::Editor)
        .await
        .unwrap();
    // Class micro: 3 tasks per worker, so three 60 s tasks keep one worker busy and a wave of
    // six short tasks wants two more, drained again when the wave is done.
    create(
        &c,
        "fox",
        CreateEnvironment {
            environment_class: Some(EnvironmentClass::Micro),
            max_workers: Some(4),
            ..env("etl")
        },
    )
    .await;
    wait_for_phase(&c, "fox", "etl", Phase::Available, Duration::from_secs(300)).await;
    deploy(&c, "fox", "etl", "long", &naps("long", 3, 60)).await;
    deploy(&c, "fox", "etl", "wave", &naps("wave", 6, 1)).await;

    let mut long_runs = vec![trigger(&c, "fox", "etl", "long").await];
    let mut last_long = Instant::now();
    // Count from when the first long task runs.
    let start = Instant::now();
    while workers(&c, "fox", "etl").await.running == 0 {
        assert!(start.elapsed() < Duration::from_secs(120), "long never ran");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let first = workers(&c, "fox", "etl").await.scale_downs;
    let mut wave_runs: Vec<String> = Vec::new();
    let (mut wave, mut wave_downs) = (None::<(String, Instant)>, first);
    loop {
        let w = workers(&c, "fox", "etl").await;
        if w.scale_downs - first >= 20 {
            break;
        }
        // A new long run every 30 s keeps 60 s tasks in flight the whole time.
        if last_long.elapsed() >= Duration::from_secs(30) {
            long_runs.push(trigger(&c, "fox", "etl", "long").await);
            last_long = Instant::now();
        }
        // The next wave once the last one is done and its workers were drained.
        let next = match &wave {
            None => true,
            Some((run, at)) => {
                run_state(&c, "fox", "etl", "wave", run).await == "success"
                    && (w.scale_downs > wave_downs || at.elapsed() > Duration::from_secs(60))
            }
        };
        if next {
            let run = trigger(&c, "fox", "etl", "wave").await;
            wave_runs.push(run.clone());
            wave = Some((run, Instant::now()));
            wave_downs = w.scale_downs;
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "only {} scale-downs: {w:?}",
            w.scale_downs - first
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The long tasks of the runs started so far were in flight during those scale-downs (a
    // run was triggered every 30 s and lasts over 60 s). Every task of every run succeeds once.
    let start = Instant::now();
    for (dag, runs, per_run) in [("long", &long_runs, 3), ("wave", &wave_runs, 6)] {
        for run in runs {
            while run_state(&c, "fox", "etl", dag, run).await != "success" {
                assert!(start.elapsed() < Duration::from_secs(300), "{dag} {run}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            assert_eq!(
                all_succeeded_once(&c, "fox", "etl", dag, run).await,
                per_run
            );
        }
    }
    eprintln!(
        "{} long runs, {} waves, {} scale-downs",
        long_runs.len(),
        wave_runs.len(),
        workers(&c, "fox", "etl").await.scale_downs - first
    );
    stack.shutdown().await;
}
