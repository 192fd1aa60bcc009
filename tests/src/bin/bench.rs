//! `hangar-bench`: Hangar's benchmark commands. Each prints one JSON object per figure on
//! stdout and rewrites its own section of docs/benchmarks.md. Run through `scripts/bench`.
//!
//! `portal`: the portal's list and environment pages for a tenant with 1,000 environments.
//!
//! `api`: seeds tenants × environments through the real API, then measures environment get
//! and list under concurrent clients (`api_p99_ms`, DESIGN.md), load generator on the same machine.
//!
//! `terraform`: `terraform apply` of 1 environment on real Airflow, and apply / no-op plan /
//! destroy of 1 and 20 environments on a cell that reports them running at once.
//!
//! `pool`: the cell's task pool (`executor: "hangar"`) on real Airflow beside a Celery
//! environment: queued → running on an idle cell, memory per running task, a weighted burst.
//!
//! `simulate`: replays the generated multi-tenant trace through Hangar's shared pool of
//! workers, MWAA-like dedicated workers, KEDA autoscaling and a cell-wide pool of task slots
//! (`pool_utilization`), offline once it has measured a task's start in a Python runtime.
//!
//! `soak`: the whole platform (`hangar serve` and `hangar agent` as processes of their own)
//! with real Airflow environments running a DAG every minute and API clients reading and
//! writing, for minutes on end: latency and errors per minute, the control plane's and the
//! agent's memory and descriptors over time, DAG runs, and what is left once it is all deleted.
#![allow(clippy::expect_used)]

#[path = "bench/pool.rs"]
mod pool;
#[path = "bench/portal.rs"]
mod portal;
#[path = "bench/soak.rs"]
mod soak;
#[path = "bench/terraform.rs"]
mod tf_bench;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use hangar_control_plane::settings::{DatabaseSettings, ServeSettings};
use hangar_control_plane::startup::Application;
use hangar_data_plane::embedded::PrivatePostgres;
use hangar_data_plane::simulator as sim;
use hangar_tenants::api::{CreateEnvironment, CreateTenant, CreateToken, Role};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
    /// Where to write the results section (skipped with --no-docs).
    #[arg(long, default_value = "docs/benchmarks.md", global = true)]
    docs: PathBuf,
    #[arg(long, global = true)]
    no_docs: bool,
}

#[derive(Subcommand)]
enum Bench {
    /// Hibernation with the process runtime and real Airflow: asked → `HIBERNATED`
    /// (`hibernate_s`), memory asleep, and a call of its Airflow API through Hangar → answered
    /// (`wake_s`).
    /// Then an environment with a DAG every 2 minutes and an idle window of one minute (10 s
    /// long here) left alone: how late each scheduled run starts (`schedule_lateness_s`).
    Wake {
        /// Measured hibernate and wake cycles, one after another.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Scheduled runs watched for lateness (2 minutes each; 0 skips it).
        #[arg(long, default_value_t = 5)]
        cycles: u32,
    },
    /// Environment create, idle memory and delete with the process runtime and real Airflow.
    Env {
        /// Measured creates and deletes (after one warm-up that fills the runtime cache and
        /// the template).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Seconds an environment idles before its memory is read.
        #[arg(long, default_value_t = 30)]
        settle: u64,
        /// Creates measured against a cell that keeps one environment prepared
        /// (`HANGAR_WARM_POOL=1`), each once the pool has refilled (0 skips them).
        #[arg(long, default_value_t = 10)]
        warm_runs: usize,
    },
    /// DAG sync: bucket write → DAG listed by the environment's Airflow (`dag_sync_s`), and the
    /// cost of a sync cycle over many unchanged files.
    Sync {
        /// DAG uploads measured, one after another.
        #[arg(long, default_value_t = 50)]
        uploads: usize,
        /// Unchanged files for the steady-state cycle.
        #[arg(long, default_value_t = 5000)]
        files: usize,
    },
    /// The cell's task pool on real Airflow: queued → running on an idle cell (beside Celery
    /// from zero workers), memory per running task, and a weighted burst's use of the slots.
    Pool {
        /// One-task runs measured for each executor.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Worker scale-up from zero: task queued with no worker → task running (`scale_up_s`).
    Scale {
        /// Measured runs, each starting from zero workers.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Airflow CLI round trip through Hangar (`POST …/cli`, `dags list`) against the same command
    /// run directly in the environment.
    Cli {
        /// Measured runs of each.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Live log tail: a line written to a component's log → received by a follower
    /// (`GET …/logs?follow=true`), through the agent's shipper and the control plane.
    Logs {
        /// Lines measured, one after another at irregular gaps.
        #[arg(long, default_value_t = 100)]
        lines: usize,
    },
    /// Simulated worker policies on a generated multi-tenant trace (`pool_utilization`):
    /// Hangar's shared pool vs dedicated (MWAA-like) workers vs KEDA vs a cell-wide pool of
    /// task slots, whose per-task start it first measures in the default Python runtime.
    Simulate {
        #[arg(long, default_value_t = 200)]
        tenants: u32,
        #[arg(long, default_value_t = 24)]
        hours: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Task starts measured (a new Python process importing Airflow's task SDK).
        #[arg(long, default_value_t = 10)]
        task_start_runs: usize,
    },
    /// Environment-hours awake with hibernation vs always on, over the simulator's generated
    /// multi-tenant day (`env_hours_awake`), for several idle windows; offline.
    Asleep {
        #[arg(long, default_value_t = 200)]
        tenants: u32,
        #[arg(long, default_value_t = 24)]
        hours: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The portal's environment list and environment pages for a tenant with many
    /// environments (`portal_p99_ms`).
    Portal {
        #[arg(long, default_value_t = 1000)]
        environments: usize,
        /// Pages measured of each kind.
        #[arg(long, default_value_t = 400)]
        requests: usize,
        /// Signed-in viewers loading pages at once.
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// Terraform with the provider hangar/hangar: apply of 1 environment on real Airflow, and
    /// apply, no-op plan and destroy of 1 and 20 environments (parallelism 10).
    Terraform {
        /// Measured runs of each (median reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The whole platform under steady use for minutes on end: `hangar serve` and `hangar
    /// agent` as processes of their own, environments running a DAG every minute, API clients
    /// reading and writing; per minute the API's p99 and errors and both processes' memory and
    /// descriptors; at the end the DAG runs and what deleting everything left behind.
    Soak {
        /// Minutes measured, one window each (after the environments are up).
        #[arg(long, default_value_t = 30)]
        minutes: u32,
        /// Airflow environments, alternately with the Celery executor and the task pool.
        #[arg(long, default_value_t = 3)]
        environments: u32,
        /// API clients, each with a tenant admin token of its own.
        #[arg(long, default_value_t = 4)]
        clients: u32,
    },
    /// Environment get/list latency and throughput of the control plane API.
    Api {
        #[arg(long, default_value_t = 100)]
        tenants: usize,
        #[arg(long, default_value_t = 10)]
        envs_per_tenant: usize,
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Measured seconds (after a 3 s warm-up).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
}

struct Tenant {
    name: String,
    token: String,
    envs: Vec<String>,
}

async fn seed(
    admin: &hangar_client::Client,
    tenants: usize,
    envs: usize,
) -> anyhow::Result<Vec<Tenant>> {
    let cell = admin
        .create_cell(&hangar_tenants::api::CreateCell {
            name: "bench".into(),
            runtime: hangar_tenants::api::Runtime::Process,
        })
        .await?;
    admin
        .with_token(cell.token)
        .register_cell(
            "bench",
            &hangar_tenants::api::RegisterCell {
                capacity: hangar_tenants::api::CellCapacity {
                    max_environments: u32::try_from(tenants * envs).unwrap_or(u32::MAX),
                    worker_slots: 64,
                },
                agent_version: "bench".into(),
                isolation: None,
                warm_pool: 0,
                agent_panics: 0,
            },
        )
        .await?;
    let seeded = futures::stream::iter(0..tenants)
        .map(|i| async move {
            let name = format!("tenant-{i:03}");
            admin
                .create_tenant(&CreateTenant {
                    name: name.clone(),
                    display_name: None,
                })
                .await?;
            let token = admin
                .create_token(
                    &name,
                    &CreateToken {
                        name: "bench".into(),
                        role: Role::Viewer,
                    },
                )
                .await?
                .token;
            let mut env_names = Vec::new();
            for j in 0..envs {
                let env = format!("env-{j:02}");
                admin
                    .create_environment(
                        &name,
                        &CreateEnvironment {
                            name: env.clone(),
                            tags: Some([("team".to_owned(), name.clone())].into()),
                            ..Default::default()
                        },
                        None,
                    )
                    .await?;
                env_names.push(env);
            }
            anyhow::Ok(Tenant {
                name,
                token,
                envs: env_names,
            })
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    seeded.into_iter().collect()
}

#[derive(Default)]
struct Tally {
    get: Option<Histogram<u64>>,
    list: Option<Histogram<u64>>,
    errors: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

async fn client_loop(
    address: String,
    tenants: Arc<Vec<Tenant>>,
    warmup_end: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally {
        get: Some(histogram()),
        list: Some(histogram()),
        errors: 0,
    };
    let mut rng = rand::rngs::StdRng::from_entropy();
    // One connection per simulated client, as a real client keeps; the tenant's token per request.
    let base = hangar_tests::client(&address, None);
    let clients: Vec<_> = tenants
        .iter()
        .map(|t| base.with_token(t.token.clone()))
        .collect();
    while Instant::now() < end {
        let ti = rng.gen_range(0..tenants.len());
        let t = &tenants[ti];
        let is_get = rng.gen_bool(0.5);
        let path = if is_get {
            let e = &t.envs[rng.gen_range(0..t.envs.len())];
            format!("v1/tenants/{}/environments/{e}", t.name)
        } else {
            format!("v1/tenants/{}/environments", t.name)
        };
        let start = Instant::now();
        let ok = match clients[ti].request(Method::GET, &path).send().await {
            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
            Err(_) => false,
        };
        let micros = u64::try_from(start.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if start < warmup_end {
            continue;
        }
        if !ok {
            tally.errors += 1;
            continue;
        }
        let h = if is_get {
            &mut tally.get
        } else {
            &mut tally.list
        };
        if let Some(h) = h {
            let _ = h.record(micros);
        }
    }
    tally
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    (h.value_at_quantile(q) as f64 / 1000.0 * 100.0).round() / 100.0
}

/// A control plane on a private Postgres of its own, for the benchmarks that need no data plane.
pub struct ControlPlane {
    pub address: String,
    /// A client with the platform admin's token.
    pub admin: hangar_client::Client,
    /// Cancel to stop the server.
    pub shutdown: CancellationToken,
    _pg: PrivatePostgres,
}

impl ControlPlane {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = PathBuf::from(format!("/tmp/hangar-bench-pg-{}", std::process::id()));
        let pg = PrivatePostgres::start(&dir)
            .await
            .context("failed to start a private Postgres")?;
        pg.stop_and_remove_after(std::process::id())?;
        let admin_token = "bench-platform-admin-token-000000";
        let app = Application::build(ServeSettings {
            database: DatabaseSettings {
                database_url: SecretString::from(pg.url("postgres").expose_secret().to_owned()),
                db_max_connections: 20,
            },
            listen: ([127, 0, 0, 1], 0).into(),
            admin_token: SecretString::from(admin_token.to_owned()),
            master_key: SecretString::from(hangar_control_plane::secrets::MasterKey::generate()),
            airflow_versions: vec!["3.3.2".into()],
            cell_ttl_secs: 3600,
            bucket: None,
            token_cache_secs: 5,
            metrics_token: None,
            ui_domain: None,
            proxy_max_response_bytes: hangar_control_plane::service::airflow::MAX_RESPONSE_BYTES,
            idle_minute_secs: 60,
            bootstrap_cell: None,
            bootstrap_cell_token: None,
            relay_listen: None,
        })
        .await?;
        let address = format!("http://127.0.0.1:{}", app.local_addr()?.port());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run(shutdown.clone()));
        let admin = hangar_tests::client(&address, Some(admin_token));
        Ok(Self {
            address,
            admin,
            shutdown,
            _pg: pg,
        })
    }
}

async fn bench_api(
    tenants: usize,
    envs: usize,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<serde_json::Value> {
    let cp = ControlPlane::start().await?;
    let (address, admin, shutdown) = (cp.address.clone(), cp.admin.clone(), cp.shutdown.clone());

    let seed_start = Instant::now();
    let seeded = Arc::new(seed(&admin, tenants, envs).await?);
    let seed_s = seed_start.elapsed().as_secs_f64();
    eprintln!("seeded {tenants} tenants x {envs} environments in {seed_s:.1} s");

    let warmup_end = Instant::now() + Duration::from_secs(3);
    let end = warmup_end + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            tokio::spawn(client_loop(
                address.clone(),
                seeded.clone(),
                warmup_end,
                end,
            ))
        })
        .collect();
    let mut get = histogram();
    let mut list = histogram();
    let mut errors = 0;
    for h in handles {
        let t = h.await?;
        if let Some(g) = &t.get {
            get.add(g)?;
        }
        if let Some(l) = &t.list {
            list.add(l)?;
        }
        errors += t.errors;
    }
    let mut all = get.clone();
    all.add(&list)?;
    shutdown.cancel();
    let requests = all.len();
    Ok(json!({
        "figure": "api_p99_ms",
        "value": ms(&all, 0.99),
        "p50_ms": ms(&all, 0.50),
        "get_p50_ms": ms(&get, 0.50),
        "get_p99_ms": ms(&get, 0.99),
        "list_p50_ms": ms(&list, 0.50),
        "list_p99_ms": ms(&list, 0.99),
        "requests_per_s": requests / seconds,
        "requests": requests,
        "errors": errors,
        "clients": clients,
        "seconds": seconds,
        "tenants": tenants,
        "environments": tenants * envs,
        "seed_s": (seed_s * 10.0).round() / 10.0,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    }))
}

async fn wait_phase(
    c: &hangar_client::Client,
    env: &str,
    want: hangar_tenants::Phase,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    loop {
        let e = c.get_environment("bench", env).await?;
        if e.phase == want {
            return Ok(start.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            !matches!(
                e.phase,
                hangar_tenants::Phase::CreateFailed | hangar_tenants::Phase::UpdateFailed
            ),
            "{env} failed: {:?}",
            e.status_message
        );
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "{env} not {want} after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resident and proportional memory (kB) of every process in the process groups of an
/// environment's components.
fn env_memory_kb(home: &std::path::Path) -> (u64, u64, usize) {
    let groups: Vec<String> = std::fs::read_dir(home.join("run"))
        .map(|d| {
            d.flatten()
                .filter_map(|f| {
                    std::fs::read_to_string(f.path())
                        .ok()?
                        .split_whitespace()
                        .next()
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    let (mut rss, mut pss, mut n) = (0, 0, 0);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let pgrp = rest.split(' ').nth(2).unwrap_or_default();
        if !groups.iter().any(|g| g == pgrp) {
            continue;
        }
        let field = |file: &str, key: &str| -> u64 {
            std::fs::read_to_string(entry.path().join(file))
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
    }
    (rss, pss, n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    let x = if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    };
    (x * 100.0).round() / 100.0
}

async fn bench_env(runs: usize, settle: u64) -> anyhow::Result<Vec<serde_json::Value>> {
    let stack = hangar_tests::spawn_stack().await?;
    let editor = stack.app.tenant_with_role("bench", Role::Editor).await?;
    let create = |name: String| {
        let editor = editor.clone();
        async move {
            editor
                .create_environment(
                    "bench",
                    &CreateEnvironment {
                        name,
                        ..Default::default()
                    },
                    None,
                )
                .await
        }
    };
    eprintln!("warm-up: filling the runtime cache and the template");
    let warm = Instant::now();
    create("warm-up".into()).await?;
    wait_phase(&editor, "warm-up", hangar_tenants::Phase::Available).await?;
    let warm_s = warm.elapsed().as_secs_f64();
    editor.delete_environment("bench", "warm-up").await?;
    wait_phase(&editor, "warm-up", hangar_tenants::Phase::Deleted).await?;

    let (mut creates, mut deletes) = (Vec::new(), Vec::new());
    let mut memory = None;
    for i in 0..runs {
        let name = format!("env-{i}");
        let start = Instant::now();
        let id = create(name.clone()).await?.environment.id;
        wait_phase(&editor, &name, hangar_tenants::Phase::Available).await?;
        creates.push(start.elapsed().as_secs_f64());
        eprintln!("{name}: AVAILABLE in {:.1} s", creates[i]);
        if i == 0 {
            tokio::time::sleep(Duration::from_secs(settle)).await;
            memory = Some(env_memory_kb(&stack.env_home(id)));
        }
        let start = Instant::now();
        editor.delete_environment("bench", &name).await?;
        wait_phase(&editor, &name, hangar_tenants::Phase::Deleted).await?;
        deletes.push(start.elapsed().as_secs_f64());
    }
    stack.shutdown().await;
    let (rss, pss, procs) = memory.unwrap_or_default();
    Ok(vec![
        json!({"figure": "env_create_s", "value": median(creates.clone()), "runs": creates, "first_ever_s": (warm_s * 10.0).round() / 10.0, "min_workers": 0}),
        json!({"figure": "idle_rss_mb", "value": rss / 1024, "pss_mb": pss / 1024, "processes": procs, "settle_s": settle, "workers": 0}),
        json!({"figure": "env_delete_s", "value": median(deletes.clone()), "runs": deletes}),
    ])
}

/// Seconds until the bench cell has a prepared environment up.
async fn wait_warm_ready(admin: &hangar_client::Client) -> anyhow::Result<f64> {
    let start = Instant::now();
    loop {
        let cells = admin.list_cells().await?.cells;
        if cells.iter().any(|c| c.warm_ready > 0) {
            return Ok(start.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "no prepared environment after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `env_create_s` from the warm pool: each create once the cell's one prepared environment is
/// up, API create → `AVAILABLE` (read every 20 ms); and how long the pool took to refill.
async fn bench_env_warm(runs: usize) -> anyhow::Result<serde_json::Value> {
    let stack = hangar_tests::spawn_stack_opts(hangar_tests::StackOptions {
        warm_pool: 1,
        ..Default::default()
    })
    .await?;
    let editor = stack.app.tenant_with_role("bench", Role::Editor).await?;
    let first = wait_warm_ready(&stack.app.admin).await?;
    eprintln!("the first prepared environment was up in {first:.1} s");
    let (mut creates, mut refills) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let name = format!("warm-{i}");
        let start = Instant::now();
        let created = editor
            .create_environment(
                "bench",
                &CreateEnvironment {
                    name: name.clone(),
                    ..Default::default()
                },
                None,
            )
            .await?
            .environment;
        anyhow::ensure!(
            created.revision == 2,
            "{name} did not take the prepared environment over"
        );
        loop {
            let e = editor.get_environment("bench", &name).await?;
            if e.phase == hangar_tenants::Phase::Available {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(120),
                "{name} not AVAILABLE after 120 s: {:?}",
                e.status_message
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        creates.push((start.elapsed().as_secs_f64() * 100.0).round() / 100.0);
        eprintln!("{name}: AVAILABLE in {:.2} s (prepared)", creates[i]);
        editor.delete_environment("bench", &name).await?;
        wait_phase(&editor, &name, hangar_tenants::Phase::Deleted).await?;
        refills.push((wait_warm_ready(&stack.app.admin).await? * 10.0).round() / 10.0);
    }
    stack.shutdown().await;
    let mut sorted = creates.clone();
    sorted.sort_by(f64::total_cmp);
    let p95 = sorted
        .get(((sorted.len() as f64 * 0.95).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or_default();
    Ok(json!({
        "figure": "env_create_s",
        "from": "warm pool",
        "value": median(creates.clone()),
        "p95": p95,
        "runs": creates,
        "refill_s": median(refills.clone()),
        "refills": refills,
    }))
}

fn env_markdown(r: &[serde_json::Value], runs: usize, settle: u64) -> String {
    let get = |i: usize, k: &str| r.get(i).map(|v| v[k].to_string()).unwrap_or_default();
    let warm = match r.get(3) {
        Some(w) => format!(
            "**From the warm pool.** A second stack whose agent keeps one environment prepared \
(`HANGAR_WARM_POOL=1`: runtime linked, database cloned, secrets generated, Airflow started with the \
default configuration); each create (default spec) waits until the pool has refilled, then takes the \
prepared environment over, and is read every 20 ms until `AVAILABLE`.\n\n\
| figure | value | aim |\n|---|---|---|\n\
| `env_create_s` from the warm pool: API create → `AVAILABLE` | p50 {p50} s, p95 {p95} s (runs: {runs}) | p50 ≤ 1 s, p95 ≤ 2 s |\n\
| pool refilled: the next prepared environment up, counted from when the claimed one was deleted (about 4 s after the claim), median | {refill} s (runs: {refills}) | |\n\n",
            p50 = w["value"],
            p95 = w["p95"],
            runs = w["runs"],
            refill = w["refill_s"],
            refills = w["refills"],
        ),
        None => String::new(),
    };
    format!(
        "## Environments on the process runtime (`env_create_s`, `idle_rss_mb`, `env_delete_s`)\n\n\
Command: `scripts/bench env` (release build; the whole platform on this machine: control plane, private \
Postgres 15 and Redis 7, in-process agent, real Apache Airflow 3.3.2 with the Celery executor and \
`min_workers = 0`, each environment isolated as the process runtime always does it as root: its own Unix \
user, its cgroups with its class's limits, Landlock; one unmeasured warm-up environment fills the runtime \
cache and the migrated template, then {runs} environments are created, measured and deleted one after \
another). Measured {date}.\n\n\
| figure | value | aim |\n|---|---|---|\n\
| `env_create_s`: API create → `AVAILABLE`, median of {runs} | {c} s (runs: {cr}) | ≤ 20 s (MWAA 20–30 min, Composer ~25 min) |\n\
| first environment ever (cold runtime and template) | {w} s | |\n\
| `idle_rss_mb`: summed RSS after {settle} s idle, 0 workers | {rss} MB over {procs} processes (PSS {pss} MB) | ≤ 700 MB |\n\
| `env_delete_s`: API delete → `DELETED`, median | {d} s | |\n\n\
Summed RSS counts pages shared between an environment's forked processes once per process; PSS \
divides them among the processes that share them.\n\n{warm}",
        date = chrono::Utc::now().format("%Y-%m-%d"),
        c = get(0, "value"),
        cr = get(0, "runs"),
        w = get(0, "first_ever_s"),
        rss = get(1, "value"),
        pss = get(1, "pss_mb"),
        procs = get(1, "processes"),
        d = get(2, "value"),
    )
}

/// Replaces (or appends) the section between `<!-- bench:NAME -->` markers.
fn write_section(path: &PathBuf, name: &str, body: &str) -> anyhow::Result<()> {
    let start = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let current = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nMeasured figures, written by `scripts/bench`. Each section is replaced by its own command.\n".to_owned()
    });
    let section = format!("{start}\n{body}{end}");
    let next = match (current.find(&start), current.find(&end)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{section}{}", &current[..a], &current[b + end.len()..])
        }
        _ => format!("{}\n{section}\n", current.trim_end()),
    };
    std::fs::write(path, next).with_context(|| format!("failed to write {}", path.display()))
}

fn api_markdown(r: &serde_json::Value) -> String {
    format!(
        "## Control plane API: environment reads under load (`api_p99_ms`)\n\n\
Command: `scripts/bench api` (release build; {tenants} tenants × {per} environments seeded through the API, \
{clients} concurrent clients for {seconds} s after a 3 s warm-up, half `GET …/environments/{{env}}`, half \
`GET …/environments`, each with a tenant viewer token; control plane, its private Postgres 15 and the load \
generator on the same {cores} cores). Measured {date}.\n\n\
| figure | value | aim |\n|---|---|---|\n\
| p99, all reads | {p99} ms | ≤ 20 ms |\n\
| p50, all reads | {p50} ms | |\n\
| get p50 / p99 | {gp50} / {gp99} ms | |\n\
| list p50 / p99 | {lp50} / {lp99} ms | |\n\
| throughput | {rps} requests/s | ≥ 3,000 |\n\
| errors | {errors} of {requests} | 0 |\n\n",
        tenants = r["tenants"],
        per = r["environments"].as_u64().unwrap_or(0) / r["tenants"].as_u64().unwrap_or(1).max(1),
        clients = r["clients"],
        seconds = r["seconds"],
        cores = r["cores"],
        date = chrono::Utc::now().format("%Y-%m-%d"),
        p99 = r["value"],
        p50 = r["p50_ms"],
        gp50 = r["get_p50_ms"],
        gp99 = r["get_p99_ms"],
        lp50 = r["list_p50_ms"],
        lp99 = r["list_p99_ms"],
        rps = r["requests_per_s"],
        errors = r["errors"],
        requests = r["requests"],
    )
}

fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    (v.get(i).copied().unwrap_or_default() * 100.0).round() / 100.0
}

/// `uploads` DAG files written straight into the environment's `dags/` prefix of `url`'s
/// bucket, each timed from the write to the DAG being listed by the environment's Airflow API.
async fn dag_sync_latency(url: Option<String>, uploads: usize) -> anyhow::Result<Vec<f64>> {
    let stack = hangar_tests::spawn_stack_on(true, url.clone()).await?;
    let editor = stack.app.tenant_with_role("bench", Role::Editor).await?;
    editor
        .create_environment(
            "bench",
            &CreateEnvironment {
                name: "sync".into(),
                ..Default::default()
            },
            None,
        )
        .await?;
    wait_phase(&editor, "sync", hangar_tenants::Phase::Available).await?;
    let bucket = match &url {
        Some(u) => hangar_data_plane::bucket::Bucket::from_url(u)?,
        None => hangar_data_plane::bucket::Bucket::local(stack.bucket.clone())?,
    };
    let prefix = bucket.dags_prefix("bench", "sync");
    let mut out = Vec::new();
    for i in 0..uploads {
        let dag = format!(
            "from datetime import datetime\nfrom airflow.sdk import dag\n\n\
             @dag(schedule=None, start_date=datetime(2024, 1, 1))\ndef sync_{i}():\n    pass\n\n\
             sync_{i}()\n"
        );
        let path = hangar_data_plane::bucket::Bucket::child(&prefix, &format!("sync_{i}.py"));
        let start = Instant::now();
        bucket.put(&path, dag.into()).await?;
        loop {
            let r = editor
                .request(
                    Method::GET,
                    &format!("v1/tenants/bench/environments/sync/airflow/api/v2/dags/sync_{i}"),
                )
                .send()
                .await?;
            if r.status().is_success() {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(120),
                "sync_{i} not listed after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        out.push(start.elapsed().as_secs_f64());
        eprintln!("sync_{i}: listed after {:.2} s", out[i]);
    }
    stack.shutdown().await;
    Ok(out)
}

/// Sync cycles over `files` unchanged files: milliseconds per cycle, objects listed, bytes
/// downloaded.
async fn sync_cycle(url: &str, files: usize) -> anyhow::Result<serde_json::Value> {
    let bucket = hangar_data_plane::bucket::Bucket::from_url(url)?;
    futures::stream::iter(0..files)
        .map(|i| {
            let bucket = bucket.clone();
            async move {
                let p = hangar_data_plane::bucket::Bucket::child(
                    &bucket.dags_prefix("bench", "cycle"),
                    &format!("team_{}/dag_{i}.py", i % 50),
                );
                bucket.put(&p, "x = 1\n".into()).await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let home = std::env::temp_dir().join(format!(
        "hangar-bench-sync-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&home)?;
    let mut sync = hangar_data_plane::dag_sync::DagSync::new(bucket, "bench", "cycle", &home, true);
    let t = Instant::now();
    let first = sync.sync().await?;
    let first_s = t.elapsed().as_secs_f64();
    let mut ms = Vec::new();
    let (mut listed, mut bytes) = (0, 0);
    for _ in 0..10 {
        let t = Instant::now();
        let o = sync.sync().await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        listed = o.listed;
        bytes += o.bytes;
    }
    let _ = std::fs::remove_dir_all(&home);
    Ok(json!({
        "cycle_ms_p50": percentile(ms.clone(), 0.5),
        "cycle_ms_max": percentile(ms, 1.0),
        "listed": listed,
        "bytes_downloaded": bytes,
        "first_sync_s": (first_s * 100.0).round() / 100.0,
        "first_sync_files": first.downloaded.len(),
    }))
}

async fn bench_sync(uploads: usize, files: usize) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut results = Vec::new();
    eprintln!("dag_sync_s on the local bucket (file://)");
    let local = dag_sync_latency(None, uploads).await?;
    results.push(json!({"figure": "dag_sync_s", "store": "file", "p50": percentile(local.clone(), 0.5), "p95": percentile(local.clone(), 0.95), "max": percentile(local, 1.0), "uploads": uploads}));
    let moto = hangar_tests::emulators::Moto::start().await?;
    let s3 = moto.bucket_url("bench", "hangar").await?;
    eprintln!("dag_sync_s on S3 (moto)");
    let remote = dag_sync_latency(Some(s3.clone()), uploads).await?;
    results.push(json!({"figure": "dag_sync_s", "store": "s3 (moto)", "p50": percentile(remote.clone(), 0.5), "p95": percentile(remote.clone(), 0.95), "max": percentile(remote, 1.0), "uploads": uploads}));
    let dir = std::env::temp_dir().join(format!(
        "hangar-bench-bucket-{}",
        uuid::Uuid::new_v4().simple()
    ));
    for (store, url) in [
        ("file", format!("file://{}", dir.display())),
        ("s3 (moto)", s3),
    ] {
        eprintln!("sync cycle over {files} unchanged files on {store}");
        let mut r = sync_cycle(&url, files).await?;
        r["figure"] = json!("sync_cycle");
        r["store"] = json!(store);
        r["files"] = json!(files);
        results.push(r);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(results)
}

fn sync_markdown(r: &[serde_json::Value], uploads: usize, files: usize) -> String {
    let mut rows = String::new();
    for x in r.iter().filter(|x| x["figure"] == "dag_sync_s") {
        rows.push_str(&format!(
            "| `dag_sync_s` on {} | p50 {} s, p95 {} s (max {} s) | p95 ≤ 5 s (MWAA ~60 s, Composer 3–5 min) |\n",
            x["store"].as_str().unwrap_or_default(),
            x["p50"],
            x["p95"],
            x["max"]
        ));
    }
    for x in r.iter().filter(|x| x["figure"] == "sync_cycle") {
        rows.push_str(&format!(
            "| sync cycle, {files} unchanged files on {} | {} ms p50 (max {} ms), {} objects listed, {} bytes downloaded | |\n",
            x["store"].as_str().unwrap_or_default(),
            x["cycle_ms_p50"],
            x["cycle_ms_max"],
            x["listed"],
            x["bytes_downloaded"]
        ));
    }
    format!(
        "## DAG sync from the platform bucket (`dag_sync_s`)\n\n\
Command: `scripts/bench sync` (release build; the whole platform on this machine with real Apache Airflow \
3.3.2; {uploads} DAG files written one after another straight into the environment's `dags/` prefix, each \
timed from the write to `GET …/airflow/api/v2/dags/{{id}}` answering 200 through Hangar, polled every 50 ms; \
the agent ticks every second. Then {files} unchanged files, 10 sync cycles each. S3 is moto's server on \
this machine: no network latency, so real S3 adds its round trips, about 1 listing request per 1,000 \
objects per cycle). Measured {date}.\n\n\
| figure | value | aim |\n|---|---|---|\n{rows}\n",
        date = chrono::Utc::now().format("%Y-%m-%d"),
    )
}

/// Creates `bench/etl` on the stack, waits until it is available and uploads `file` with
/// `source` into its DAGs; returns the tenant's editor client and the environment's id.
/// The environment `bench/etl`, `AVAILABLE`, with an editor's client.
async fn available_etl(
    stack: &hangar_tests::Stack,
) -> anyhow::Result<(hangar_client::Client, uuid::Uuid)> {
    let c = stack.app.tenant_with_role("bench", Role::Editor).await?;
    let id = c
        .create_environment(
            "bench",
            &CreateEnvironment {
                name: "etl".into(),
                ..Default::default()
            },
            None,
        )
        .await?
        .environment
        .id;
    wait_phase(&c, "etl", hangar_tenants::Phase::Available).await?;
    Ok((c, id))
}

async fn etl_with_dag(
    stack: &hangar_tests::Stack,
    file: &str,
    source: &str,
) -> anyhow::Result<(hangar_client::Client, uuid::Uuid)> {
    let (c, id) = available_etl(stack).await?;
    let r = c
        .request(
            reqwest::Method::PUT,
            &format!("v1/tenants/bench/environments/etl/dags/{file}"),
        )
        .body(source.to_owned())
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "upload of {file}: {}", r.status());
    Ok((c, id))
}

/// `runs` times: hibernate the environment (request → `HIBERNATED`, its memory then), and wake
/// it with a call of its Airflow API through Hangar (request → answered, retrying a 503).
async fn bench_wake(runs: usize) -> anyhow::Result<serde_json::Value> {
    let stack = hangar_tests::spawn_stack().await?;
    let (c, id) = available_etl(&stack).await?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let awake = env_memory_kb(&stack.env_home(id));
    let (mut sleeps, mut wakes, mut asleep) = (Vec::new(), Vec::new(), (0, 0, 0));
    for i in 0..runs {
        let start = Instant::now();
        c.hibernate_environment("bench", "etl").await?;
        wait_phase(&c, "etl", hangar_tenants::Phase::Hibernated).await?;
        sleeps.push(start.elapsed().as_secs_f64());
        asleep = env_memory_kb(&stack.env_home(id));
        let start = Instant::now();
        loop {
            let (status, body) = hangar_tests::airflow_api(
                &c,
                "bench",
                "etl",
                reqwest::Method::GET,
                "version",
                None,
            )
            .await;
            if status == 200 {
                break;
            }
            anyhow::ensure!(
                status == 503 && start.elapsed() < Duration::from_secs(300),
                "wake {i}: {status} {body}"
            );
        }
        wakes.push(start.elapsed().as_secs_f64());
        eprintln!(
            "cycle {i}: hibernated in {:.1} s, woken and answered in {:.1} s",
            sleeps[i], wakes[i]
        );
    }
    stack.shutdown().await;
    let round = |v: &[f64]| -> Vec<f64> { v.iter().map(|x| (x * 100.0).round() / 100.0).collect() };
    let (wakes, sleeps) = (round(&wakes), round(&sleeps));
    Ok(json!({
        "figure": "wake_s",
        "p50": percentile(wakes.clone(), 0.5),
        "p95": percentile(wakes.clone(), 0.95),
        "runs": wakes,
        "hibernate_s": median(sleeps.clone()),
        "hibernate_runs": sleeps,
        "idle_rss_mb_awake": awake.0 / 1024,
        "processes_awake": awake.2,
        "idle_rss_mb_hibernated": asleep.0 / 1024,
        "processes_hibernated": asleep.2,
    }))
}

/// An environment that hibernates by itself (window: one minute, 10 s long here) with a DAG
/// every 2 minutes, watched `cycles` runs long through its phase only: how late each run
/// started after its due time, and how much of the time it was hibernated.
async fn bench_schedule(cycles: u32) -> anyhow::Result<serde_json::Value> {
    let stack = hangar_tests::spawn_stack_opts(hangar_tests::StackOptions {
        idle_minute_secs: 10,
        ..Default::default()
    })
    .await?;
    let c = stack.app.tenant_with_role("bench", Role::Editor).await?;
    c.create_environment(
        "bench",
        &CreateEnvironment {
            name: "etl".into(),
            hibernate_after_idle_minutes: Some(1),
            ..Default::default()
        },
        None,
    )
    .await?;
    wait_phase(&c, "etl", hangar_tenants::Phase::Available).await?;
    let r = c
        .request(
            reqwest::Method::PUT,
            "v1/tenants/bench/environments/etl/dags/every_two_minutes.py",
        )
        .body(hangar_tests::EVERY_TWO_MINUTES)
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "upload: {}", r.status());
    let api = |method, path: &'static str, body| {
        hangar_tests::airflow_api(&c, "bench", "etl", method, path, body)
    };
    let start = Instant::now();
    while api(reqwest::Method::GET, "dags/every_two_minutes", None)
        .await
        .0
        != 200
    {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "DAG not listed");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (s, body) = api(
        reqwest::Method::PATCH,
        "dags/every_two_minutes",
        Some(json!({"is_paused": false})),
    )
    .await;
    anyhow::ensure!(s == 200, "unpause: {s} {body}");
    let left = chrono::Utc::now();
    let watched = Instant::now();
    let (mut polls, mut asleep) = (0u32, 0u32);
    while watched.elapsed() < Duration::from_secs(u64::from(cycles) * 120 + 90) {
        let e = c.get_environment("bench", "etl").await?;
        polls += 1;
        if e.phase == hangar_tenants::Phase::Hibernated {
            asleep += 1;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let ended = chrono::Utc::now();
    let (s, runs) = api(
        reqwest::Method::GET,
        "dags/every_two_minutes/dagRuns?order_by=run_after&limit=100",
        None,
    )
    .await;
    anyhow::ensure!(s == 200, "runs: {s} {runs}");
    let audit = stack.app.admin.audit("bench").await?;
    let by_idle = audit
        .entries
        .iter()
        .filter(|e| e.action == "environment.hibernate" && e.details["by"] == "idle")
        .count();
    stack.shutdown().await;
    let mut late = Vec::new();
    for r in runs["dag_runs"].as_array().into_iter().flatten() {
        let at = |k: &str| {
            r[k].as_str()
                .and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok())
        };
        let (Some(due), Some(started)) = (at("run_after"), at("start_date")) else {
            continue;
        };
        if r["run_type"] == "scheduled" && due > left && due < ended - chrono::Duration::seconds(60)
        {
            anyhow::ensure!(r["state"] == "success", "run due {due}: {}", r["state"]);
            late.push(((started - due).num_milliseconds() as f64 / 10.0).round() / 100.0);
        }
    }
    anyhow::ensure!(!late.is_empty(), "no scheduled run watched");
    eprintln!("scheduled runs started late by {late:?} s; hibernated at {asleep} of {polls} polls");
    Ok(json!({
        "figure": "schedule_lateness_s",
        "max": late.iter().copied().fold(0.0, f64::max),
        "p50": percentile(late.clone(), 0.5),
        "runs": late,
        "hibernated_fraction": (f64::from(asleep) / f64::from(polls.max(1)) * 100.0).round() / 100.0,
        "hibernations_for_idleness": by_idle,
    }))
}

fn schedule_markdown(r: &serde_json::Value, cycles: u32) -> String {
    format!(
        "\nThen `--cycles {cycles}`: an environment with `hibernate_after_idle_minutes = 1` (one minute lasting \
10 s, `HANGAR_IDLE_MINUTE_SECS=10`) and a DAG every 2 minutes, left alone for {cycles} runs and watched by its \
phase only. Asked to hibernate for idleness {n} time(s) (it then stays asked and wakes only for each run), \
it was `HIBERNATED` at {f} % of the polls; each run's start after its due time (`start_date − run_after`):\n\n\
| figure | value | aim |\n|---|---|---|\n\
| `schedule_lateness_s` across hibernations, max / p50 | {max} s / {p50} s (runs: {runs}) | max ≤ 30 s |\n\n",
        n = r["hibernations_for_idleness"],
        f = (r["hibernated_fraction"].as_f64().unwrap_or(0.0) * 100.0).round(),
        max = r["max"],
        p50 = r["p50"],
        runs = r["runs"],
    )
}

fn wake_markdown(r: &serde_json::Value, runs: usize) -> String {
    format!(
        "## Hibernation (`wake_s`, `idle_rss_mb` asleep)\n\n\
Command: `scripts/bench wake --runs {runs}` (release build; the whole platform on this machine, real \
Apache Airflow 3.3.2 with the Celery executor on the process runtime, `min_workers = 0`). {runs} cycles, \
one after another: `POST …/hibernate` → `HIBERNATED`, then a `GET` of its Airflow API's `version` through \
Hangar → answered (the call wakes it and waits; a 503 to retry past 25 s is retried). Measured {date}.\n\n\
| figure | value | aim |\n|---|---|---|\n\
| `wake_s`: call of a hibernated environment → answered, p50 / p95 of {runs} | {p50} s / {p95} s (runs: {wr}) | p95 ≤ 10 s |\n\
| hibernate: request → `HIBERNATED` (nothing queued or running), median | {h} s (runs: {hr}) | |\n\
| `idle_rss_mb` awake (30 s after `AVAILABLE`, 0 workers) | {ra} MB over {pa} processes | ≤ 700 MB |\n\
| `idle_rss_mb` hibernated | {rh} MB over {ph} processes | 0 |\n\n",
        date = chrono::Utc::now().format("%Y-%m-%d"),
        p50 = r["p50"],
        p95 = r["p95"],
        wr = r["runs"],
        h = r["hibernate_s"],
        hr = r["hibernate_runs"],
        ra = r["idle_rss_mb_awake"],
        pa = r["processes_awake"],
        rh = r["idle_rss_mb_hibernated"],
        ph = r["processes_hibernated"],
    )
}

/// `runs` times: wait for the environment to have no worker, trigger a one-task DAG and take
/// the task's `queued_when` → `start_date` from Airflow's own records.
async fn bench_scale(runs: usize) -> anyhow::Result<serde_json::Value> {
    use hangar_tests::{airflow_api, StackOptions};
    use reqwest::Method;
    let stack = hangar_tests::spawn_stack_opts(StackOptions {
        scale_down_cooldown: Duration::from_secs(2),
        tick: Duration::from_secs(2),
        ..StackOptions::default()
    })
    .await?;
    let dag = "from datetime import datetime\nfrom airflow.sdk import dag, task\n\n\n\
@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)\ndef one():\n    @task\n    \
def nap():\n        import time\n        time.sleep(1)\n\n    nap()\n\n\none()\n";
    let (c, _) = etl_with_dag(&stack, "one.py", dag).await?;
    let api = |m: Method, path: String, body: Option<serde_json::Value>| {
        let c = c.clone();
        async move { airflow_api(&c, "bench", "etl", m, &path, body).await }
    };
    let start = Instant::now();
    while api(Method::GET, "dags/one".into(), None).await.0 != 200 {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "DAG not listed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    api(
        Method::PATCH,
        "dags/one".into(),
        Some(json!({"is_paused": false})),
    )
    .await;
    let ts = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .ok_or_else(|| anyhow::anyhow!("not a timestamp: {v}"))
    };
    let mut samples = Vec::new();
    for i in 0..runs {
        let start = Instant::now();
        loop {
            let w = c
                .get_environment("bench", "etl")
                .await?
                .observed
                .and_then(|o| o.workers)
                .unwrap_or_default();
            if w.actual == 0 && w.draining == 0 {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(120),
                "workers stay up: {w:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (s, run) = api(
            Method::POST,
            "dags/one/dagRuns".into(),
            Some(json!({"logical_date": null})),
        )
        .await;
        anyhow::ensure!(s == 200, "trigger: {run}");
        let run = run["dag_run_id"].as_str().unwrap_or_default().to_owned();
        let start = Instant::now();
        let ti = loop {
            let (_, ti) = api(
                Method::GET,
                format!("dags/one/dagRuns/{run}/taskInstances/nap"),
                None,
            )
            .await;
            if ti["state"] == "success" {
                break ti;
            }
            anyhow::ensure!(ti["state"] != "failed", "task failed: {ti}");
            anyhow::ensure!(start.elapsed() < Duration::from_secs(180), "run {i}: {ti}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let secs =
            (ts(&ti["start_date"])? - ts(&ti["queued_when"])?).num_milliseconds() as f64 / 1000.0;
        eprintln!("run {i}: queued → running {secs:.2} s");
        samples.push(secs);
    }
    stack.shutdown().await;
    Ok(json!({
        "figure": "scale_up_s",
        "p50": percentile(samples.clone(), 0.5),
        "p95": percentile(samples.clone(), 0.95),
        "max": percentile(samples.clone(), 1.0),
        "runs": samples.iter().map(|s| (s * 100.0).round() / 100.0).collect::<Vec<_>>(),
        "tick_s": 2,
    }))
}

fn scale_markdown(r: &serde_json::Value, runs: usize) -> String {
    format!(
        "## Worker scale-up from zero (`scale_up_s`)\n\n\
Command: `scripts/bench scale` (release build; the whole platform on this machine with real Apache \
Airflow 3.3.2, one environment with `min_workers = 0`, the agent ticking every 2 s as shipped; {runs} runs, \
each waiting for the environment to be back at 0 workers (cooldown 2 s here), then triggering a DAG of one \
1 s task; the time is the task's `queued_when` → `start_date` as Airflow recorded them). Measured {date}.\n\n\
| figure | value | aim |\n|---|---|---|\n\
| `scale_up_s`: task queued with 0 workers → running | p50 {p50} s, p95 {p95} s (max {max} s) | p95 ≤ 15 s (MWAA and Composer keep ≥ 1 worker; the Helm chart's KEDA polls every 30 s) |\n\n\
Runs: {runs_list}.\n\n",
        date = chrono::Utc::now().format("%Y-%m-%d"),
        p50 = r["p50"],
        p95 = r["p95"],
        max = r["max"],
        runs_list = r["runs"],
    )
}

/// `runs` times `airflow dags list` through Hangar's API, and `runs` times the same command run
/// directly with the scheduler's own program and environment (read from /proc), in the DAG folder.
async fn bench_cli(runs: usize) -> anyhow::Result<serde_json::Value> {
    use hangar_tenants::api::RunAirflowCli;
    let stack = hangar_tests::spawn_stack().await?;
    let dag = "from datetime import datetime\nfrom airflow.sdk import dag, task\n\n\n\
@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)\ndef listed():\n    @task\n    \
def nap():\n        pass\n\n    nap()\n\n\nlisted()\n";
    let (c, id) = etl_with_dag(&stack, "listed.py", dag).await?;
    let args: Vec<String> = ["dags", "list"].map(String::from).to_vec();
    let req = RunAirflowCli {
        args: args.clone(),
        timeout_seconds: None,
    };
    let start = Instant::now();
    loop {
        let r = c.run_airflow_cli("bench", "etl", &req).await?;
        if r.stdout.contains("listed") {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "DAG not listed: {r:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut through = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let r = c.run_airflow_cli("bench", "etl", &req).await?;
        anyhow::ensure!(r.exit_code == Some(0), "{r:?}");
        through.push(t.elapsed().as_secs_f64());
    }
    // The same command as the scheduler would run it.
    let home = stack.env_home(id);
    let pid: u32 = std::fs::read_to_string(home.join("run/scheduler-0.pid"))?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()?;
    let nul_split = |b: Vec<u8>| -> Vec<String> {
        b.split(|c| *c == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    // `python …/bin/airflow scheduler`: the runtime's `airflow` script.
    let program = nul_split(std::fs::read(format!("/proc/{pid}/cmdline"))?)
        .into_iter()
        .find(|a| a.ends_with("/bin/airflow"))
        .ok_or_else(|| anyhow::anyhow!("the scheduler's command line names no airflow"))?;
    let env: Vec<(String, String)> = nul_split(std::fs::read(format!("/proc/{pid}/environ"))?)
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    let mut bare = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = tokio::process::Command::new(&program)
            .args(&args)
            .env_clear()
            .envs(env.iter().cloned())
            .current_dir(home.join("dags"))
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        bare.push(t.elapsed().as_secs_f64());
    }
    stack.shutdown().await;
    let (p50, bare_p50) = (
        percentile(through.clone(), 0.5),
        percentile(bare.clone(), 0.5),
    );
    Ok(json!({
        "figure": "cli_round_trip_s",
        "command": "dags list",
        "p50": p50,
        "p95": percentile(through.clone(), 0.95),
        "bare_p50": bare_p50,
        "bare_p95": percentile(bare, 0.95),
        "overhead_p50": ((p50 - bare_p50) * 100.0).round() / 100.0,
        "runs": runs,
    }))
}

fn cli_markdown(r: &serde_json::Value, runs: usize) -> String {
    format!(
        "## Airflow CLI through Hangar (`cli_round_trip_s`)\n\n\
Command: `scripts/bench cli` (release build; the whole platform on this machine with real Apache Airflow \
3.3.2; {runs} runs of `airflow dags list` through `POST …/environments/etl/cli` (the control plane queues it, \
the agent, long-polling for commands, claims it within 100 ms, runs it, answers; the caller polls for the answer every 100 ms), \
then {runs} runs of the same command run directly with the scheduler's program, environment and folder). \
Measured {date}.\n\n\
| figure | value |\n|---|---|\n\
| through Hangar, `dags list` | p50 {p50} s, p95 {p95} s |\n\
| bare `airflow dags list` in the environment | p50 {bp50} s, p95 {bp95} s |\n\
| Hangar's overhead, p50 | {over} s |\n\n",
        date = chrono::Utc::now().format("%Y-%m-%d"),
        p50 = r["p50"],
        p95 = r["p95"],
        bp50 = r["bare_p50"],
        bp95 = r["bare_p95"],
        over = r["overhead_p50"],
    )
}

/// `lines` times: append a line to the scheduler's log file and time its arrival at a
/// follower of the scheduler's logs.
async fn bench_logs(lines: usize) -> anyhow::Result<serde_json::Value> {
    use std::io::Write;
    let stack = hangar_tests::spawn_stack().await?;
    let c = stack.app.tenant_with_role("bench", Role::Editor).await?;
    let id = c
        .create_environment(
            "bench",
            &CreateEnvironment {
                name: "etl".into(),
                ..Default::default()
            },
            None,
        )
        .await?
        .environment
        .id;
    wait_phase(&c, "etl", hangar_tenants::Phase::Available).await?;
    let mut follower = c
        .follow_logs(
            "bench",
            "etl",
            &[("component", "scheduler".into()), ("limit", "0".into())],
        )
        .await?;
    let path = stack.env_home(id).join("components/scheduler-0.log");
    let mut latencies = Vec::with_capacity(lines);
    for i in 0..lines {
        // Irregular gaps, so writes fall at every phase of the shipper's and follower's polls.
        tokio::time::sleep(Duration::from_millis((i as u64 * 379) % 1000)).await;
        let marker = format!("bench-tail-{i}-{}", uuid::Uuid::new_v4().simple());
        let written = Instant::now();
        {
            let mut f = std::fs::OpenOptions::new().append(true).open(&path)?;
            writeln!(
                f,
                "{} [info     ] {marker}",
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ")
            )?;
        }
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), follower.next())
                .await
                .map_err(|_| anyhow::anyhow!("line {i} not received in 30 s"))??
                .ok_or_else(|| anyhow::anyhow!("the follow ended"))?;
            if line.message.ends_with(&marker) {
                break;
            }
        }
        latencies.push(written.elapsed().as_secs_f64());
    }
    drop(follower);
    stack.shutdown().await;
    let max = latencies.iter().copied().fold(0.0, f64::max);
    Ok(json!({
        "figure": "log_tail_s",
        "p50": percentile(latencies.clone(), 0.5),
        "p95": percentile(latencies, 0.95),
        "max": (max * 1000.0).round() / 1000.0,
        "lines": lines,
        "target_p95": 2.0,
    }))
}

fn logs_markdown(r: &serde_json::Value) -> String {
    format!(
        "## Live log tail (`log_tail_s`)\n\n\
Command: `scripts/bench logs` (release build; the whole platform on this machine with one real Apache \
Airflow 3.3.2 environment; {lines} marker lines appended to the environment's scheduler log file at \
irregular gaps of 0–1 s, each timed from the write to its arrival at a follower of \
`GET …/logs?component=scheduler&follow=true`: the agent reads the files every 0.5 s and posts new lines, \
the follower's stream looks for new lines every 0.2 s). Measured {date}.\n\n\
| figure | value | aim |\n|---|---|---|\n\
| line written → received, p50 | {p50} s | |\n\
| line written → received, p95 | {p95} s | ≤ 2 s |\n\
| slowest | {max} s | |\n\n",
        date = chrono::Utc::now().format("%Y-%m-%d"),
        lines = r["lines"],
        p50 = r["p50"],
        p95 = r["p95"],
        max = r["max"],
    )
}

/// Issue 5's targets for the hangar policy on the generated trace.
const TARGET_UTILIZATION: f64 = 0.75;
const TARGET_P95_WAIT_S: f64 = 30.0;
const TARGET_FEWER_WORKER_HOURS: f64 = 3.0;

/// What a task of the Hangar executor pays before its code runs, measured here: a new Python
/// process of the default runtime importing what `execute_workload` needs (the workload
/// entry point, the supervisor, the task runner and the task SDK).
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct TaskStart {
    p50_s: f64,
    p95_s: f64,
    runs: usize,
}

/// The imports of a task process before its code runs.
const TASK_START_IMPORTS: &str = "import airflow.sdk.execution_time.execute_workload, \
airflow.sdk.execution_time.supervisor, airflow.sdk.execution_time.task_runner, airflow.sdk";

async fn measure_task_start(runs: usize) -> anyhow::Result<TaskStart> {
    let cache = hangar_data_plane::runtime::python::RuntimeCache::new(
        &hangar_tests::test_runtime_dir(),
        std::path::Path::new("uv"),
    );
    eprintln!("task start: preparing the default Python runtime (built once per machine)");
    let runtime = cache
        .ensure(hangar_tenants::spec::DEFAULT_AIRFLOW_VERSION, "")
        .await
        .context("failed to prepare the default Python runtime")?;
    let python = runtime.dir.join("bin").join("python");
    let home = tempfile::tempdir()?;
    let mut times = Vec::with_capacity(runs);
    // One start first, not counted: the files come into the page cache as on any busy cell.
    for i in 0..=runs {
        let start = Instant::now();
        let out = tokio::process::Command::new(&python)
            .args(["-c", TASK_START_IMPORTS])
            .env_clear()
            .env("HOME", home.path())
            .env("AIRFLOW_HOME", home.path())
            .env("PATH", "/usr/bin:/bin")
            .output()
            .await
            .with_context(|| format!("failed to run {}", python.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "the task SDK's imports failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if i > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    Ok(TaskStart {
        p50_s: (at(0.5) * 1000.0).round() / 1000.0,
        p95_s: (at(0.95) * 1000.0).round() / 1000.0,
        runs,
    })
}

struct Simulated {
    params: sim::GenerateParams,
    task_start: TaskStart,
    stats: sim::TraceStats,
    generate_s: f64,
    /// The three policies, with their replay time in seconds.
    policies: Vec<(sim::Report, f64)>,
    /// Hangar with one parameter changed: what, and the report.
    variants: Vec<(String, sim::Report)>,
    /// The task pool with one parameter changed.
    task_variants: Vec<(String, sim::Report)>,
}

fn bench_simulate(params: sim::GenerateParams, task_start: TaskStart) -> anyhow::Result<Simulated> {
    let start = Instant::now();
    let trace = sim::generate(&params)?;
    let generate_s = start.elapsed().as_secs_f64();
    let concurrency = sim::model::DEFAULT_CONCURRENCY;
    let stats = sim::trace_stats(&trace, concurrency);
    let pool = stats.zero_wait_peak_workers.max(1);
    let one_task_pool = sim::trace_stats(&trace, 1).zero_wait_peak_workers.max(1);
    let task_start_ms = (task_start.p50_s * 1000.0).round() as u64;
    let mut policies = Vec::new();
    for policy in sim::Policy::ALL {
        let model = match policy {
            // Task slots: the trace's zero-wait peak of tasks, as the worker pool's is of workers.
            sim::Policy::HangarTasks => {
                sim::Model::hangar_tasks(Some(one_task_pool), task_start_ms)
            }
            _ => sim::Model::of(policy, Some(pool)),
        };
        let start = Instant::now();
        let report = sim::simulate(&trace, &model)?;
        policies.push((report, start.elapsed().as_secs_f64()));
        eprintln!(
            "{}: replayed in {:.2} s",
            policy.name(),
            policies[policies.len() - 1].1
        );
    }
    let hangar = sim::Model::hangar(Some(pool));
    let scaled = |f: f64| ((f64::from(pool) * f).round() as u32).max(1);
    let variants: Vec<(String, sim::Model)> = vec![
        ("pool unlimited".into(), sim::Model { pool_slots: None, ..hangar }),
        (format!("pool {} slots (75 % of the zero-wait peak)", scaled(0.75)), sim::Model { pool_slots: Some(scaled(0.75)), ..hangar }),
        (format!("pool {} slots (50 %)", scaled(0.5)), sim::Model { pool_slots: Some(scaled(0.5)), ..hangar }),
        (
            "instant scaling: cooldown 0 s, start latency 0 s, evaluated every 0.1 s, pool unlimited".into(),
            sim::Model {
                cooldown_ms: 0,
                start_latency_ms: 0,
                evaluate_every_ms: 100,
                pool_slots: None,
                ..hangar
            },
        ),
        ("cooldown 0 s".into(), sim::Model { cooldown_ms: 0, ..hangar }),
        (
            "demand without the tasks of draining workers".into(),
            sim::Model {
                demand_counts_draining: false,
                ..hangar
            },
        ),
        ("cooldown 300 s".into(), sim::Model { cooldown_ms: 300_000, ..hangar }),
        ("start latency 30 s".into(), sim::Model { start_latency_ms: 30_000, ..hangar }),
        (
            format!(
                "concurrency 1, max 50 workers (one task per worker, the same 50 task slots per environment), pool {one_task_pool} worker slots (its zero-wait peak)"
            ),
            sim::Model {
                concurrency: 1,
                max_workers: hangar.max_workers * hangar.concurrency,
                pool_slots: Some(one_task_pool),
                ..hangar
            },
        ),
    ];
    let variants = variants
        .into_iter()
        .map(|(what, m)| Ok((what, sim::simulate(&trace, &m)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tasks = sim::Model::hangar_tasks(Some(one_task_pool), task_start_ms);
    let task_pool = |f: f64| ((f64::from(one_task_pool) * f).round() as u32).max(1);
    let task_variants: Vec<(String, sim::Model)> = vec![
        (
            format!(
                "pool {} task slots (75 % of its zero-wait peak)",
                task_pool(0.75)
            ),
            sim::Model {
                pool_slots: Some(task_pool(0.75)),
                ..tasks
            },
        ),
        (
            format!("pool {} task slots (50 %)", task_pool(0.5)),
            sim::Model {
                pool_slots: Some(task_pool(0.5)),
                ..tasks
            },
        ),
        (
            format!("pool {} task slots (25 %)", task_pool(0.25)),
            sim::Model {
                pool_slots: Some(task_pool(0.25)),
                ..tasks
            },
        ),
        (
            "task start 0 s".into(),
            sim::Model {
                start_latency_ms: 0,
                ..tasks
            },
        ),
        (
            "task start 10 s".into(),
            sim::Model {
                start_latency_ms: 10_000,
                ..tasks
            },
        ),
    ];
    let task_variants = task_variants
        .into_iter()
        .map(|(what, m)| Ok((what, sim::simulate(&trace, &m)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Simulated {
        params,
        task_start,
        stats,
        generate_s,
        policies,
        variants,
        task_variants,
    })
}

/// How many times fewer provisioned slot-hours `r` used than the dedicated policy: the same
/// as the worker-hours ratio for workers of the same concurrency, and still a like-for-like
/// capacity comparison when a variant changes the worker's size.
fn fewer_than_dedicated(s: &Simulated, r: &sim::Report) -> f64 {
    let dedicated = s
        .policies
        .iter()
        .find(|(p, _)| p.policy == sim::Policy::Dedicated.name())
        .map_or(0.0, |(p, _)| p.provisioned_slot_hours);
    if r.provisioned_slot_hours > 0.0 {
        (dedicated / r.provisioned_slot_hours * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// The generated trace's parameters, checked.
fn trace_params(tenants: u32, hours: u32, seed: u64) -> anyhow::Result<sim::GenerateParams> {
    anyhow::ensure!(
        tenants > 0 && hours > 0,
        "--tenants and --hours must be at least 1"
    );
    Ok(sim::GenerateParams {
        tenants,
        hours,
        seed,
    })
}

/// Idle windows replayed by the `asleep` benchmark, in minutes (60: the default).
const ASLEEP_WINDOWS: [u64; 4] = [60, 30, 15, 5];

/// Environment-hours awake over a generated trace, for each of [`ASLEEP_WINDOWS`].
fn bench_asleep(params: &sim::GenerateParams) -> anyhow::Result<Vec<serde_json::Value>> {
    let trace = sim::generate(params)?;
    Ok(ASLEEP_WINDOWS
        .iter()
        .map(|&minutes| {
            let h =
                sim::hibernation::awake_hours(&trace, sim::hibernation::WakeRules::agent(minutes));
            let mut v = serde_json::to_value(&h).unwrap_or_default();
            v["figure"] = json!("env_hours_awake");
            v["value"] = json!((h.awake_env_hours * 10.0).round() / 10.0);
            v["hibernate_after_idle_minutes"] = json!(minutes);
            v["awake_fraction"] =
                json!(((h.awake_env_hours / h.always_on_env_hours) * 1000.0).round() / 1000.0);
            v["tenants"] = json!(params.tenants);
            v["seed"] = json!(params.seed);
            v
        })
        .collect())
}

fn asleep_markdown(results: &[serde_json::Value], params: &sim::GenerateParams) -> String {
    let mut table = "| `hibernate_after_idle_minutes` | environment-hours awake | of always on | times asleep | never asleep |\n|---|---|---|---|---|\n".to_owned();
    let always = results
        .first()
        .map_or(0.0, |r| r["always_on_env_hours"].as_f64().unwrap_or(0.0));
    for r in results {
        table.push_str(&format!(
            "| {} | {:.1} | {:.1} % | {} | {} of {} |\n",
            r["hibernate_after_idle_minutes"],
            r["awake_env_hours"].as_f64().unwrap_or(0.0),
            r["awake_fraction"].as_f64().unwrap_or(0.0) * 100.0,
            r["hibernations"],
            r["never_asleep"],
            r["environments"],
        ));
    }
    format!(
        "## Environment-hours awake with hibernation (`env_hours_awake`)\n\n\
`scripts/bench asleep --tenants {tenants} --hours {hours} --seed {seed}` ({date}): the simulator's generated \
day (the trace of the pool simulation above: {tenants} tenants, one environment each), replayed by the \
hibernation rules (`data-plane/src/simulator/hibernation.rs`): an environment sleeps once it has had no task \
for its idle window and no task is due within the window from then, wakes 60 s before its next task, and \
sleeps only when that leaves 10 s or more. Always on: {always:.0} environment-hours.\n\n{table}\n\
The trace has no uses of environments' Airflow through Hangar (a use keeps one awake for the window) and its \
tasks count as scheduled ahead; every environment starts the day awake. Most of the generated DAGs run \
hourly, so with the default window of 60 minutes their next run is always due within the window and those \
environments never sleep; a shorter window lets them sleep between runs (each wake costs about 10 s of \
start-up, `wake_s` above).\n",
        tenants = params.tenants,
        hours = params.hours,
        seed = params.seed,
        date = chrono::Utc::now().format("%Y-%m-%d"),
    )
}

fn simulate_json(s: &Simulated) -> Vec<serde_json::Value> {
    let mut out = vec![json!({
        "figure": "task_start_s",
        "value": s.task_start.p50_s,
        "p50": s.task_start.p50_s,
        "p95": s.task_start.p95_s,
        "runs": s.task_start.runs,
    })];
    for (r, replay_s) in &s.policies {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        v["figure"] = json!("pool_utilization");
        v["value"] = json!(r.utilization);
        v["fewer_slot_hours_than_dedicated"] = json!(fewer_than_dedicated(s, r));
        v["replay_s"] = json!((replay_s * 1000.0).round() / 1000.0);
        v["trace"] = serde_json::to_value(&s.stats).unwrap_or_default();
        v["seed"] = json!(s.params.seed);
        out.push(v);
    }
    for (what, r) in s.variants.iter().chain(&s.task_variants) {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        v["figure"] = json!("pool_utilization_variant");
        v["variant"] = json!(what);
        v["value"] = json!(r.utilization);
        v["fewer_slot_hours_than_dedicated"] = json!(fewer_than_dedicated(s, r));
        out.push(v);
    }
    out
}

fn simulate_markdown(s: &Simulated) -> String {
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    let row = |what: &str, r: &sim::Report| {
        format!(
            "| {what} | {wh:.0} | {sh:.0} | {x:.2}× | {u} | {p50} / {p95} / {max} s | {j:.3} | {em} / {ew} s | {peak} |\n",
            wh = r.worker_hours,
            sh = r.provisioned_slot_hours,
            x = fewer_than_dedicated(s, r),
            u = pct(r.utilization),
            p50 = r.wait_p50_s,
            p95 = r.wait_p95_s,
            max = r.wait_max_s,
            j = r.fairness_jain,
            em = r.env_p95_wait_median_s,
            ew = r.env_p95_wait_max_s,
            peak = r.peak_workers,
        )
    };
    let header = "| {first} | worker-hours | provisioned slot-hours | fewer than dedicated | utilization | queue wait p50 / p95 / max | fairness (Jain) | environments' p95 wait: median / worst | peak workers |\n|---|---|---|---|---|---|---|---|---|\n";
    let mut table = header.replace("{first}", "policy");
    for (r, _) in &s.policies {
        table.push_str(&row(r.policy, r));
    }
    let mut variants = header.replace("{first}", "hangar, one change");
    for (what, r) in &s.variants {
        variants.push_str(&row(what, r));
    }
    let mut task_variants = header.replace("{first}", "hangar-tasks, one change");
    for (what, r) in &s.task_variants {
        task_variants.push_str(&row(what, r));
    }
    let model_rows: String = s
        .policies
        .iter()
        .map(|(r, _)| {
            let m = &r.model;
            let tasks = m.policy == sim::Policy::HangarTasks;
            format!(
                "| {} | {} | {} | {} | {} | {} s | {} s | {} |\n",
                r.policy,
                m.min_workers,
                m.max_workers,
                m.concurrency,
                if tasks {
                    "each event".to_owned()
                } else {
                    format!("{} s", m.evaluate_every_ms as f64 / 1000.0)
                },
                m.start_latency_ms as f64 / 1000.0,
                m.cooldown_ms as f64 / 1000.0,
                m.pool_slots.map_or("none (no shared cap)".to_owned(), |p| {
                    format!("{p} {} slots", if tasks { "task" } else { "worker" })
                }),
            )
        })
        .collect();
    let hangar = s
        .policies
        .iter()
        .find(|(r, _)| r.policy == "hangar")
        .map(|(r, _)| r);
    let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
    let dedicated_wh = s
        .policies
        .iter()
        .find(|(r, _)| r.policy == "dedicated")
        .map_or(0.0, |(r, _)| r.worker_hours);
    let ideal_ratio = dedicated_wh / s.stats.zero_wait_worker_hours.max(0.01);
    let targets = hangar.map_or_else(String::new, |h| {
        let x = fewer_than_dedicated(s, h);
        format!(
            "The shared pool's targets for the hangar policy on this trace: pool utilization ≥ 75 % with p95 queue wait ≤ 30 s: \
{} (utilization {}, p95 {} s); ≥ 3× fewer worker-hours than dedicated: {} ({x:.2}×). \
The packing bound of the trace is {}: no policy whose workers each serve one environment with {} task slots, \
not even one starting and stopping workers instantly and moving running tasks between them, can use its slots \
better on this trace; that ideal's {zwh} worker-hours are {ideal_ratio:.2}× fewer than dedicated's.\n\n",
            verdict(h.utilization >= TARGET_UTILIZATION && h.wait_p95_s <= TARGET_P95_WAIT_S),
            pct(h.utilization),
            h.wait_p95_s,
            verdict(x >= TARGET_FEWER_WORKER_HOURS),
            pct(s.stats.packing_bound_utilization),
            sim::model::DEFAULT_CONCURRENCY,
            zwh = s.stats.zero_wait_worker_hours,
        )
    });
    let task_targets = s
        .policies
        .iter()
        .find(|(r, _)| r.policy == sim::Policy::HangarTasks.name())
        .map_or_else(String::new, |(t, _)| {
            let x = fewer_than_dedicated(s, t);
            format!(
                "The task pool's targets for the hangar-tasks policy (a model: the executor it describes is not built \
yet): utilization ≥ 75 % with p95 queue wait ≤ 30 s: {} (utilization {}, p95 {} s, every task's own {:.2} s \
start included in both); ≥ 3× fewer provisioned slot-hours than dedicated: {} ({x:.2}×).\n\n",
                verdict(t.utilization >= TARGET_UTILIZATION && t.wait_p95_s <= TARGET_P95_WAIT_S),
                pct(t.utilization),
                t.wait_p95_s,
                s.task_start.p50_s,
                verdict(x >= TARGET_FEWER_WORKER_HOURS),
            )
        });
    let runtime: Vec<String> = s
        .policies
        .iter()
        .map(|(r, t)| format!("{} {t:.2} s", r.policy))
        .collect();
    let st = &s.stats;
    format!(
        "## Simulated shared pool vs dedicated and per-environment autoscaling (pool_utilization)\n\n\
Command: `scripts/bench simulate --tenants {tenants} --hours {hours} --seed {seed}` (the defaults; \
`hangar simulate run --tenants {tenants} --hours {hours} --seed {seed} --task-start-s {ts}` prints the same four \
policies). \
Offline and deterministic: the figures depend only on the seed and the models, the runtime on the machine. \
Measured {date}.\n\n\
Trace (`hangar simulate generate --tenants {tenants} --hours {hours} --seed {seed}`; how it is made: \
`data-plane/src/simulator/generate.rs`): {tasks} tasks in {envs} environments (one per tenant) over {h} h, \
hourly and daily DAGs (60 % / 40 %, half of them at minute 0), runs of 1–4 stages with fan-outs, short tasks \
(median 45 s) and long ones (median 15 min), bursts of 10–60 tasks; {busy} busy slot-hours, i.e. \
{mean} slots busy on average; if every task started on arrival, at most {ptasks} tasks would run at once, \
needing {pworkers} workers of {conc} slots ({zwh} worker-hours over the day).\n\n\
{table}\n\
{targets}\
{task_targets}\
Definitions: worker-hours = Σ over workers of (exit − start request), so start latency and draining are \
paid for, workers still there counted to the end of the period (24 h, or the last completion if later); \
utilization = busy slot-seconds (Σ task durations) / provisioned slot-seconds (worker-seconds × concurrency), \
DESIGN.md's pool utilization; queue wait = task start − arrival (nearest-rank percentiles over all tasks); \
fairness = Jain's index over the environments' mean queue waits, (Σx)² / (n·Σx²), 1 when every tenant waits \
the same on average. Every policy completed all {tasks} tasks, none started twice (the replay refuses \
otherwise).\n\n\
Models (`data-plane/src/simulator/model.rs`; every policy scales on the same demand, \
`autoscaler::wanted_workers` = ceil((queued + running) / concurrency) within its bounds, and takes the \
agent's own step, `autoscaler::decide`: up at once into free pool slots, down after the cooldown or at once \
when the pool cut the share; Hangar's pool is split with `autoscaler::allocate`, weights equal):\n\n\
| policy | min workers | max workers | concurrency | evaluated every | worker start latency | scale-down cooldown | shared pool |\n\
|---|---|---|---|---|---|---|---|\n{model_rows}\n\
- hangar: the agent's 2 s tick; a Celery worker process is ready 5–8 s after start on the process runtime \
(8 s taken); the autoscaler's 60 s cooldown; the pool sized at the trace's zero-wait peak ({pworkers} \
worker slots, `--pool-slots auto`).\n\
- dedicated (MWAA-like): never below 1 worker; MWAA scales on one-minute CloudWatch metrics with the same \
(running + queued) / tasks-per-worker rule; a new Fargate worker takes minutes (3 min assumed); AWS documents \
2–5 min for a downscale (5 min taken).\n\
- keda: KEDA's ScaledObject defaults (polling 30 s, cooldown 300 s, which is also the HPA's scale-down \
window); a worker pod ready in 30–60 s on a node that has room (45 s taken).\n\
- hangar-tasks: one cell-wide pool of task slots, every task its own process in its environment's runtime \
(`data-plane/src/simulator/task_pool.rs`): a slot is held from the task's process start to its end and then \
goes to any environment's queued task at once; when the pool is contended it is split with \
`autoscaler::allocate` at slot granularity (the free slot goes to the environment furthest below its share), \
caps of 50 task slots per environment (the worker policies' 10 workers of 5). Every task pays its own start, \
measured here: a new Python process of the default runtime importing the task SDK's `execute_workload`, \
supervisor and task runner, p50 {ts} s / p95 {ts95} s over {tsn} runs (the p50 is replayed). The pool is the \
trace's zero-wait peak of tasks ({ptasks} task slots). Provisioned slot-hours count each task's slot from its \
process start to its end (its \"worker-hours\" and \"peak workers\" in the tables are task slots): \
slot-hours compare the capacity each policy holds, not its memory (what a \
running task costs in memory against a Celery worker slot is for the executor's own benchmark).\n\
- Scale-down drains in every policy (no new task, exit when the running ones end); a queued task goes to \
the busiest non-draining ready worker of its environment with a free slot, so idle ones can drain. Real \
KEDA scale-downs can kill running tasks (apache/airflow#26587) and MWAA documents tasks failed on \
downscaled workers; neither is modelled, so the comparison is about capacity and waiting only.\n\n\
Hangar with one parameter changed (same trace):\n\n{variants}\n\
The task pool with one parameter changed (same trace; in this table \"workers\" are task slots):\n\n{task_variants}\n\
Runtime ({profile} build, {cores} cores): trace generation {gen:.2} s; replays: {runtime}.\n\n",
        tenants = s.params.tenants,
        hours = s.params.hours,
        seed = s.params.seed,
        date = chrono::Utc::now().format("%Y-%m-%d"),
        tasks = st.tasks,
        envs = st.environments,
        h = st.horizon_hours,
        busy = st.busy_slot_hours,
        mean = st.mean_busy_slots,
        ptasks = st.zero_wait_peak_tasks,
        pworkers = st.zero_wait_peak_workers,
        conc = sim::model::DEFAULT_CONCURRENCY,
        zwh = st.zero_wait_worker_hours,
        cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        gen = s.generate_s,
        runtime = runtime.join(", "),
        profile = if cfg!(debug_assertions) { "debug" } else { "release" },
        ts = s.task_start.p50_s,
        ts95 = s.task_start.p95_s,
        tsn = s.task_start.runs,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.bench {
        Bench::Env {
            runs,
            settle,
            warm_runs,
        } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            let mut results = bench_env(runs, settle).await?;
            if warm_runs > 0 {
                results.push(bench_env_warm(warm_runs).await?);
            }
            for r in &results {
                println!("{r}");
            }
            if !cli.no_docs {
                write_section(&cli.docs, "env", &env_markdown(&results, runs, settle))?;
            }
        }
        Bench::Wake { runs, cycles } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            let r = bench_wake(runs).await?;
            println!("{r}");
            let mut doc = wake_markdown(&r, runs);
            if cycles > 0 {
                let s = bench_schedule(cycles).await?;
                println!("{s}");
                doc.push_str(&schedule_markdown(&s, cycles));
            }
            if !cli.no_docs {
                write_section(&cli.docs, "wake", &doc)?;
            }
        }
        Bench::Sync { uploads, files } => {
            anyhow::ensure!(
                uploads > 0 && files > 0,
                "--uploads and --files must be at least 1"
            );
            let results = bench_sync(uploads, files).await?;
            for r in &results {
                println!("{r}");
            }
            if !cli.no_docs {
                write_section(&cli.docs, "sync", &sync_markdown(&results, uploads, files))?;
            }
        }
        Bench::Pool { runs } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            let r = pool::bench_pool(runs).await?;
            for figure in &r {
                println!("{figure}");
            }
            if !cli.no_docs {
                write_section(&cli.docs, "pool", &pool::pool_markdown(&r, runs))?;
            }
        }
        Bench::Scale { runs } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            let r = bench_scale(runs).await?;
            println!("{r}");
            if !cli.no_docs {
                write_section(&cli.docs, "scale", &scale_markdown(&r, runs))?;
            }
        }
        Bench::Cli { runs } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            let r = bench_cli(runs).await?;
            println!("{r}");
            if !cli.no_docs {
                write_section(&cli.docs, "cli", &cli_markdown(&r, runs))?;
            }
        }
        Bench::Logs { lines } => {
            anyhow::ensure!(lines > 0, "--lines must be at least 1");
            let r = bench_logs(lines).await?;
            println!("{r}");
            if !cli.no_docs {
                write_section(&cli.docs, "logs", &logs_markdown(&r))?;
            }
        }
        Bench::Asleep {
            tenants,
            hours,
            seed,
        } => {
            let params = trace_params(tenants, hours, seed)?;
            let results = bench_asleep(&params)?;
            for r in &results {
                println!("{r}");
            }
            if !cli.no_docs {
                write_section(&cli.docs, "asleep", &asleep_markdown(&results, &params))?;
            }
        }
        Bench::Simulate {
            tenants,
            hours,
            seed,
            task_start_runs,
        } => {
            anyhow::ensure!(task_start_runs > 0, "--task-start-runs must be at least 1");
            let params = trace_params(tenants, hours, seed)?;
            let task_start = measure_task_start(task_start_runs).await?;
            eprintln!(
                "task start: p50 {:.2} s, p95 {:.2} s over {task_start_runs} runs",
                task_start.p50_s, task_start.p95_s
            );
            let s = bench_simulate(params, task_start)?;
            for r in simulate_json(&s) {
                println!("{r}");
            }
            if !cli.no_docs {
                write_section(&cli.docs, "simulate", &simulate_markdown(&s))?;
            }
        }
        Bench::Portal {
            environments,
            requests,
            clients,
        } => {
            anyhow::ensure!(
                environments > 0 && requests > 0 && clients > 0,
                "every count must be at least 1"
            );
            let r = portal::bench_portal(environments, requests, clients).await?;
            println!("{r}");
            if !cli.no_docs {
                write_section(&cli.docs, "portal", &portal::portal_markdown(&r))?;
            }
        }
        Bench::Terraform { runs } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            let r = tf_bench::bench_terraform(runs).await?;
            println!("{r}");
            if !cli.no_docs {
                write_section(&cli.docs, "terraform", &tf_bench::terraform_markdown(&r))?;
            }
        }
        Bench::Soak {
            minutes,
            environments,
            clients,
        } => {
            anyhow::ensure!(minutes >= 1, "--minutes must be at least 1");
            anyhow::ensure!(
                (1..=8).contains(&environments),
                "--environments must be between 1 and 8 (the agent's HANGAR_MAX_ENVIRONMENTS)"
            );
            anyhow::ensure!(
                (1..=64).contains(&clients),
                "--clients must be between 1 and 64"
            );
            let r = soak::bench_soak(&soak::Params {
                minutes,
                environments,
                clients,
            })
            .await?;
            for figure in &r {
                println!("{figure}");
            }
            if !cli.no_docs {
                write_section(&cli.docs, "soak", &soak::soak_markdown(&r))?;
            }
        }
        Bench::Api {
            tenants,
            envs_per_tenant,
            clients,
            seconds,
        } => {
            anyhow::ensure!(
                tenants > 0 && envs_per_tenant > 0 && clients > 0 && seconds > 0,
                "every count must be at least 1"
            );
            let r = bench_api(tenants, envs_per_tenant, clients, seconds).await?;
            println!("{r}");
            if !cli.no_docs {
                write_section(&cli.docs, "api", &api_markdown(&r))?;
            }
        }
    }
    Ok(())
}
