//! `pool`: the cell's task pool (`executor: "hangar"`) on real Airflow, beside a Celery
//! environment on the same machine: how fast an idle cell starts a task, what a running task
//! costs in memory, and how the slots are used and shared under a mixed burst.

use std::path::Path;
use std::time::{Duration, Instant};

use hangar_client::Client;
use hangar_tenants::api::{CreateEnvironment, Role};
use hangar_tenants::{EnvironmentClass, Executor, Phase};
use hangar_tests::runs::{deploy, run_state, task_instances, trigger};
use hangar_tests::{airflow_api, wait_for_phase, StackOptions};
use reqwest::Method;
use serde_json::json;

use super::{median, percentile};

/// The cell's task slots in this benchmark.
const SLOTS: u32 = 4;

/// One task sleeping `secs`, or `n` mapped ones.
fn dag(id: &str, n: u32, secs: u32) -> String {
    format!(
        "from datetime import datetime\nfrom airflow.sdk import dag, task\n\n\n\
@dag(dag_id=\"{id}\", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_tasks=64)\n\
def d():\n    @task\n    def nap(i):\n        import time\n        time.sleep({secs})\n\n    \
nap.expand(i=list(range({n})))\n\n\nd()\n"
    )
}

fn env(name: &str, executor: Executor, weight: u32) -> CreateEnvironment {
    CreateEnvironment {
        name: name.into(),
        executor: Some(executor),
        environment_class: Some(EnvironmentClass::Micro),
        worker_weight: Some(weight),
        ..Default::default()
    }
}

async fn wait_run(c: &Client, env: &str, dag: &str, run: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        match run_state(c, "bench", env, dag, run).await.as_str() {
            "success" => return Ok(()),
            "failed" => anyhow::bail!("{env} {dag} {run} failed"),
            _ => {}
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "{env} {dag} {run} not done"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn ts(v: &serde_json::Value) -> anyhow::Result<chrono::DateTime<chrono::FixedOffset>> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .ok_or_else(|| anyhow::anyhow!("not a timestamp: {v}"))
}

/// `runs` runs of a one-task DAG, one at a time on an idle cell: each task's `queued_when` →
/// `start_date`, as Airflow recorded them. With Celery, each run first waits for the
/// environment to be back at zero workers.
async fn queued_to_running(
    c: &Client,
    env: &str,
    runs: usize,
    from_zero_workers: bool,
) -> anyhow::Result<Vec<f64>> {
    let mut samples = Vec::new();
    for i in 0..runs {
        if from_zero_workers {
            let start = Instant::now();
            loop {
                let w = c
                    .get_environment("bench", env)
                    .await?
                    .observed
                    .and_then(|o| o.workers)
                    .unwrap_or_default();
                if w.actual == 0 && w.draining == 0 {
                    break;
                }
                anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "{w:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let run = trigger(c, "bench", env, "one").await;
        wait_run(c, env, "one", &run).await?;
        let ti = &task_instances(c, "bench", env, "one", &run).await[0];
        let secs =
            (ts(&ti["start_date"])? - ts(&ti["queued_when"])?).num_milliseconds() as f64 / 1000.0;
        eprintln!("{env} run {i}: queued → running {secs:.2} s");
        samples.push(secs);
    }
    Ok(samples)
}

/// RSS and PSS (KiB) of `pid` and every process below it.
fn tree_memory_kb(pid: u32) -> (u64, u64, usize) {
    let mut parents = std::collections::HashMap::<u32, Vec<u32>>::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split(' ').nth(1)?.parse::<u32>().ok())
            .unwrap_or(0);
        parents.entry(ppid).or_default().push(p);
    }
    let (mut rss, mut pss, mut n) = (0, 0, 0);
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let field = |file: &str, key: &str| -> u64 {
            std::fs::read_to_string(format!("/proc/{p}/{file}"))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find(|l| l.starts_with(key))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                })
                .unwrap_or(0)
        };
        rss += field("status", "VmRSS:");
        pss += field("smaps_rollup", "Pss:");
        n += 1;
        todo.extend(parents.get(&p).into_iter().flatten());
    }
    (rss, pss, n)
}

/// The pids in an environment's `<home>/<dir>/*.<ext>` files (first word).
fn pids(home: &Path, dir: &str, prefix: &str, ext: &str) -> Vec<u32> {
    std::fs::read_dir(home.join(dir))
        .map(|d| {
            d.flatten()
                .filter(|f| {
                    let name = f.file_name().to_string_lossy().into_owned();
                    name.starts_with(prefix) && name.ends_with(ext)
                })
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

/// Memory per running task: `n` tasks sleeping, measured once each has run 10 s; the process
/// trees of the task pool's task processes, or of the Celery worker(s) running them.
async fn memory_per_task(
    c: &Client,
    env: &str,
    home: &Path,
    n: u32,
    pool: bool,
) -> anyhow::Result<(f64, f64, usize)> {
    let run = trigger(c, "bench", env, "hold").await;
    let start = Instant::now();
    loop {
        let tis = task_instances(c, "bench", env, "hold", &run).await;
        let running = tis.iter().filter(|t| t["state"] == "running").count();
        if running == n as usize {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(180),
            "{env}: {running} running"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let roots = if pool {
        pids(home, "tasks", "", ".pid")
    } else {
        pids(home, "run", "worker-", ".pid")
    };
    let (mut rss, mut pss, mut procs) = (0, 0, 0);
    for p in roots {
        let (r, s, k) = tree_memory_kb(p);
        rss += r;
        pss += s;
        procs += k;
    }
    wait_run(c, env, "hold", &run).await?;
    let per = |kb: u64| (kb as f64 / 1024.0 / f64::from(n) * 10.0).round() / 10.0;
    Ok((per(rss), per(pss), procs))
}

/// Two environments weighted 1:3 each queue `n` tasks of `secs` at once: the pool's use of its
/// slots while tasks wait, and how the slots split while both want at least their share.
async fn burst(
    light: (&Client, &Path),
    heavy: (&Client, &Path),
    n: u32,
) -> anyhow::Result<serde_json::Value> {
    let view = |home: &Path| {
        let count = |ext: &str| {
            std::fs::read_dir(home.join("tasks"))
                .map(|d| {
                    d.flatten()
                        .filter(|f| f.path().extension().is_some_and(|x| x == ext))
                        .count()
                })
                .unwrap_or(0)
        };
        (count("pid"), count("task"))
    };
    let runs = [
        trigger(light.0, "bench", "pool", "burst").await,
        trigger(heavy.0, "bench", "heavy", "burst").await,
    ];
    let start = Instant::now();
    let (mut waiting, mut busy_waiting, mut held, mut handed_over) = (0u64, 0u64, [0u64; 2], false);
    loop {
        let (l, h) = (view(light.1), view(heavy.1));
        let running = (l.0 + h.0) as u64;
        if l.1 > l.0 || h.1 > h.0 {
            waiting += 1;
            busy_waiting += running;
        }
        handed_over |= l.0 > 0 && h.0 > 0;
        if handed_over && l.1 > l.0 && h.1 > h.0 && h.1 >= 3 {
            held[0] += l.0 as u64;
            held[1] += h.0 as u64;
        }
        let done = run_state(light.0, "bench", "pool", "burst", &runs[0]).await == "success"
            && run_state(heavy.0, "bench", "heavy", "burst", &runs[1]).await == "success";
        if done {
            break;
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(600), "burst not done");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wall = start.elapsed().as_secs_f64();
    let utilization = busy_waiting as f64 / (waiting.max(1) * u64::from(SLOTS)) as f64;
    let ratio = held[1] as f64 / held[0].max(1) as f64;
    Ok(json!({
        "figure": "task_pool_burst",
        "tasks": 2 * n,
        "slots": SLOTS,
        "utilization_while_waiting": (utilization * 1000.0).round() / 1000.0,
        "heavy_to_light_while_contended": (ratio * 100.0).round() / 100.0,
        "weights": "3:1",
        "wall_s": (wall * 10.0).round() / 10.0,
    }))
}

pub async fn bench_pool(runs: usize) -> anyhow::Result<Vec<serde_json::Value>> {
    let stack = hangar_tests::spawn_stack_opts(StackOptions {
        task_slots: Some(SLOTS),
        tick: Duration::from_secs(2),
        scale_down_cooldown: Duration::from_secs(2),
        ..StackOptions::default()
    })
    .await?;
    let c = stack.app.tenant_with_role("bench", Role::Editor).await?;
    let mut ids = Vec::new();
    for e in [
        env("pool", Executor::Hangar, 1),
        env("heavy", Executor::Hangar, 3),
        env("classic", Executor::Celery, 1),
    ] {
        ids.push(
            c.create_environment("bench", &e, None)
                .await?
                .environment
                .id,
        );
    }
    for e in ["pool", "heavy", "classic"] {
        wait_for_phase(&c, "bench", e, Phase::Available, Duration::from_secs(300)).await;
    }
    let (pool_home, heavy_home, classic_home) = (
        stack.env_home(ids[0]),
        stack.env_home(ids[1]),
        stack.env_home(ids[2]),
    );
    for e in ["pool", "classic"] {
        deploy(&c, "bench", e, "one", &dag("one", 1, 1)).await;
        deploy(&c, "bench", e, "hold", &dag("hold", 3, 30)).await;
    }
    deploy(&c, "bench", "pool", "burst", &dag("burst", 16, 5)).await;
    deploy(&c, "bench", "heavy", "burst", &dag("burst", 16, 5)).await;
    let _ = airflow_api(&c, "bench", "pool", Method::GET, "dags", None).await;

    let pool = queued_to_running(&c, "pool", runs, false).await?;
    let celery = queued_to_running(&c, "classic", runs, true).await?;
    let (pool_rss, pool_pss, pool_procs) = memory_per_task(&c, "pool", &pool_home, 3, true).await?;
    let (cel_rss, cel_pss, cel_procs) =
        memory_per_task(&c, "classic", &classic_home, 3, false).await?;
    let burst = burst((&c, &pool_home), (&c, &heavy_home), 16).await?;
    stack.shutdown().await;
    let round = |v: &[f64]| {
        v.iter()
            .map(|s| (s * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    };
    Ok(vec![
        json!({
            "figure": "task_pool_queued_to_running_s",
            "p50": percentile(pool.clone(), 0.5),
            "p95": percentile(pool.clone(), 0.95),
            "median": median(pool.clone()),
            "runs": round(&pool),
        }),
        json!({
            "figure": "celery_from_zero_queued_to_running_s",
            "p50": percentile(celery.clone(), 0.5),
            "p95": percentile(celery.clone(), 0.95),
            "runs": round(&celery),
        }),
        json!({
            "figure": "memory_per_running_task_mb",
            "task_pool": {"rss": pool_rss, "pss": pool_pss, "processes": pool_procs},
            "celery_worker_slot": {"rss": cel_rss, "pss": cel_pss, "processes": cel_procs},
            "tasks": 3,
        }),
        burst,
    ])
}

pub fn pool_markdown(r: &[serde_json::Value], runs: usize) -> String {
    let (lat, cel, mem, burst) = (&r[0], &r[1], &r[2], &r[3]);
    format!(
        "## The task pool (`executor: \"hangar\"`)\n\n\
Command: `scripts/bench pool` ({profile} build; the whole platform on this machine with real Apache \
Airflow 3.3.2: a cell with {SLOTS} task slots, two task-pool environments weighted 1:3 and one Celery \
environment with `min_workers = 0`, all class micro). Measured {date}.\n\n\
| figure | value | aim |\n|---|---|---|\n\
| queued → running, task pool, idle cell ({runs} runs of a one-task DAG; Airflow's `queued_when` → `start_date`) | p50 {lp50} s, p95 {lp95} s | p95 ≤ 3 s |\n\
| queued → running, Celery from zero workers (same DAG, agent tick 2 s) | p50 {cp50} s, p95 {cp95} s | — |\n\
| memory per running task (3 tasks sleeping, after 10 s): task pool | RSS {prss} MB, PSS {ppss} MB ({pprocs} processes) | — |\n\
| memory per running task: Celery worker slot (the worker and its tasks, 3 running) | RSS {crss} MB, PSS {cpss} MB ({cprocs} processes) | — |\n\
| burst of {tasks} 5 s tasks from both pool environments: slots busy while tasks waited | {util} | ≥ 0.75 |\n\
| slots held heavy : light while both waited for their share (weights 3:1) | {ratio} : 1 | ≈ 3 : 1 |\n\n\
Task pool runs: {lruns}. Celery runs: {cruns}. The burst took {wall} s. A slot counts as busy from its task's \
process start (Python and Airflow's imports included) to its end, as in the simulator's `hangar-tasks` policy. \
Not measured here: the pool on a machine with more cores (this one has 2, and each task start costs \
~1.7 s of CPU).\n\n",
        profile = if cfg!(debug_assertions) { "debug" } else { "release" },
        date = chrono::Utc::now().format("%Y-%m-%d"),
        lp50 = lat["p50"],
        lp95 = lat["p95"],
        cp50 = cel["p50"],
        cp95 = cel["p95"],
        prss = mem["task_pool"]["rss"],
        ppss = mem["task_pool"]["pss"],
        pprocs = mem["task_pool"]["processes"],
        crss = mem["celery_worker_slot"]["rss"],
        cpss = mem["celery_worker_slot"]["pss"],
        cprocs = mem["celery_worker_slot"]["processes"],
        tasks = burst["tasks"],
        util = burst["utilization_while_waiting"],
        ratio = burst["heavy_to_light_while_contended"],
        wall = burst["wall_s"],
        lruns = lat["runs"],
        cruns = cel["runs"],
    )
}
