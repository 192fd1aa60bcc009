//! The data-plane agent of one cell: registers with the control plane, long-polls the
//! environments placed on its cell, runs one task per environment that reconciles it with the
//! process runtime, and reports what it observes. Everything it does is idempotent: an agent
//! restarted at any point picks up where the last one stopped (and re-adopts the processes it
//! left running).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hangar_client::Client;
use hangar_tenants::api::{Assignment, CellCapacity, RegisterCell};
use hangar_tenants::{FailedApply, ObservedState, ReconcileCounters, WorkerStatus};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::autoscaler::{allocate, decide, wanted_workers, Cooldown, Demand, Step, WorkerRuntime};
use crate::log_ship::{LogSource, LogSources};
use crate::process_runtime::{Platform, ProcessEnvironment};

/// What the agent does with its environments when it is told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnShutdown {
    /// Leave them running for the next agent (an agent upgrade or restart).
    Detach,
    /// Stop their processes, keeping their data (`hangar dev` stopping the whole machine).
    Stop,
}

#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub cell: String,
    pub capacity: CellCapacity,
    /// How long one long poll waits for a change.
    pub poll_wait: Duration,
    /// How often each environment is checked.
    pub tick: Duration,
    pub on_shutdown: OnShutdown,
    /// How long an environment's lower worker target must hold before workers are drained.
    pub scale_down_cooldown: Duration,
    /// How the environments' logs are shipped and how long the bucket keeps them.
    pub logs: crate::log_ship::ShipSettings,
}

/// Every environment of the cell in its worker pool: its task demand, which the pool is split
/// by, and the slots its workers hold (taking tasks or draining).
type Pool = Arc<Mutex<BTreeMap<Uuid, Member>>>;

#[derive(Debug, Clone, Copy)]
struct Member {
    demand: Demand,
    held: u32,
}

/// Where each environment of the cell runs its Airflow CLI commands.
type CliTargets = Arc<Mutex<HashMap<Uuid, crate::cli_runner::Target>>>;

/// How long one claim for Airflow CLI commands waits for one (long poll).
const CLI_CLAIM_WAIT: Duration = Duration::from_secs(20);

/// Claims the cell's Airflow CLI commands and runs each in its environment, answering with the
/// result; commands run side by side, never in the way of reconciling.
async fn cli_loop(client: Client, cell: String, targets: CliTargets, cancel: CancellationToken) {
    let mut running = JoinSet::new();
    while !cancel.is_cancelled() {
        let claimed = tokio::select! {
            () = cancel.cancelled() => break,
            r = client.claim_cli_calls(&cell, CLI_CLAIM_WAIT) => r,
        };
        match claimed {
            Ok(c) => {
                for call in c.calls {
                    let target = targets
                        .lock()
                        .ok()
                        .and_then(|t| t.get(&call.environment_id).cloned());
                    let (client, cell) = (client.clone(), cell.clone());
                    running.spawn(async move {
                        let timeout = Duration::from_secs(u64::from(call.timeout_seconds));
                        let result =
                            crate::cli_runner::run_call(target.as_ref(), call.args, timeout).await;
                        if let Err(e) = client.finish_cli_call(&cell, call.id, &result).await {
                            tracing::warn!(call = %call.id, error = %e, "failed to answer a CLI command");
                        }
                    });
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "failed to claim CLI commands");
                sleep_or_cancel(Duration::from_secs(2), &cancel).await;
            }
        }
        while running.try_join_next().is_some() {}
    }
    running.shutdown().await;
}

/// Reports at least this often even when nothing changed (the control plane's liveness view).
const REPORT_EVERY: Duration = Duration::from_secs(15);
/// Failed applies of one revision after which a transient fault is reported as a failure.
const REPORT_FAILURE_AFTER: u32 = 3;

/// Runs the agent until `cancel`.
pub async fn run(
    client: Client,
    settings: AgentSettings,
    platform: Platform,
    cancel: CancellationToken,
) {
    let mut envs: HashMap<Uuid, watch::Sender<Assignment>> = HashMap::new();
    let pool: Pool = Arc::default();
    let targets: CliTargets = Arc::default();
    let sources = LogSources::default();
    let mut tasks = JoinSet::new();
    tasks.spawn(crate::log_ship::run(
        client.clone(),
        settings.cell.clone(),
        platform.bucket.clone(),
        sources.clone(),
        settings.logs.clone(),
        cancel.clone(),
    ));
    tasks.spawn(cli_loop(
        client.clone(),
        settings.cell.clone(),
        targets.clone(),
        cancel.clone(),
    ));
    let isolation = platform.sandbox.report();
    let mut cursor = 0i64;
    let mut registered = false;
    while !cancel.is_cancelled() {
        if !registered {
            let req = RegisterCell {
                capacity: settings.capacity,
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                isolation: Some(isolation.clone()),
            };
            match client.register_cell(&settings.cell, &req).await {
                Ok(_) => {
                    tracing::info!(cell = %settings.cell, "registered");
                    registered = true;
                }
                Err(e) => {
                    tracing::warn!(cell = %settings.cell, error = %e, "failed to register; retrying");
                    sleep_or_cancel(Duration::from_secs(2), &cancel).await;
                    continue;
                }
            }
        }
        let polled = tokio::select! {
            () = cancel.cancelled() => break,
            r = client.assignments(&settings.cell, cursor, settings.poll_wait) => r,
        };
        match polled {
            Ok(a) => {
                cursor = a.cursor;
                for assignment in a.environments {
                    match envs.get(&assignment.id) {
                        Some(tx) if !tx.is_closed() => {
                            let _ = tx.send(assignment);
                        }
                        _ => {
                            let (tx, rx) = watch::channel(assignment.clone());
                            envs.insert(assignment.id, tx);
                            tasks.spawn(environment_task(
                                client.clone(),
                                settings.clone(),
                                platform.clone(),
                                rx,
                                Shared {
                                    pool: pool.clone(),
                                    targets: targets.clone(),
                                    sources: sources.clone(),
                                },
                                cancel.clone(),
                            ));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to poll assignments; re-registering");
                registered = false;
                sleep_or_cancel(Duration::from_secs(2), &cancel).await;
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) {
    tokio::select! {
        () = cancel.cancelled() => {},
        () = tokio::time::sleep(d) => {},
    }
}

/// What an environment's reconciler shares with the rest of the cell's agent.
struct Shared {
    pool: Pool,
    targets: CliTargets,
    sources: LogSources,
}

/// Reconciles one environment until it is deleted or the agent stops.
async fn environment_task(
    client: Client,
    settings: AgentSettings,
    platform: Platform,
    mut rx: watch::Receiver<Assignment>,
    shared: Shared,
    cancel: CancellationToken,
) {
    let Shared {
        pool,
        targets,
        sources,
    } = shared;
    let leave_pool = |pool: &Pool, id: Uuid| {
        if let Ok(mut p) = pool.lock() {
            p.remove(&id);
        }
    };
    let first = rx.borrow().clone();
    let (id, name) = (first.id, format!("{}/{}", first.tenant, first.name));
    let bucket = platform.bucket.clone();
    let mut env = ProcessEnvironment::new(platform, &first);
    sources.insert(
        id,
        LogSource {
            tenant: first.tenant.clone(),
            name: first.name.clone(),
            home: env.home().to_owned(),
        },
    );
    let mut applied: Option<i64> = None;
    // The assignment whose revision runs: scaling re-applies it, never a newer failing one.
    let mut running: Option<Assignment> = None;
    let mut scaler = Scaler {
        cooldown: Cooldown::new(settings.scale_down_cooldown),
        ups: 0,
        downs: 0,
    };
    let mut failed: Option<FailedApply> = None;
    let mut attempts: (i64, u32) = (0, 0);
    let mut retry_at = Instant::now();
    let mut last: Option<(ObservedState, Instant)> = None;
    let mut counters = ReconcileCounters::default();
    loop {
        let a = rx.borrow_and_update().clone();
        if a.delete {
            // No shipper pass writes the environment's logs after this, so deleting them
            // below leaves none behind.
            sources.remove(id).await;
            let span = reconcile_span("delete", &a);
            let deleted = async {
                match env.delete(&a).await {
                    // Its logs go with it (kept for the retention only while it exists).
                    Ok(()) => match &bucket {
                        Some(b) => crate::log_ship::delete_logs(b, &a.tenant, &a.name, id)
                            .await
                            .map_err(|e| e.to_string()),
                        None => Ok(()),
                    },
                    Err(e) => Err(e.to_string()),
                }
            }
            .instrument(span.clone())
            .await;
            if deleted.is_err() {
                failure(&span, &mut counters, "delete");
            }
            match deleted {
                Ok(()) => {
                    let gone = ObservedState {
                        deleted: true,
                        ..Default::default()
                    };
                    match client.report_observed(&settings.cell, id, &gone).await {
                        Ok(_) => {
                            tracing::info!(env = %name, "deleted");
                            leave_pool(&pool, id);
                            if let Ok(mut t) = targets.lock() {
                                t.remove(&id);
                            }
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(env = %name, error = %e, "failed to report deletion")
                        }
                    }
                }
                Err(e) => tracing::warn!(env = %name, error = %e, "failed to delete; retrying"),
            }
        } else {
            let wanted = applied != Some(a.revision)
                && failed.as_ref().map(|f| f.revision) != Some(a.revision);
            if wanted && Instant::now() >= retry_at {
                let span = reconcile_span("apply", &a);
                let started = Instant::now();
                let result = env.apply(&a).instrument(span.clone()).await;
                let _enter = span.enter();
                match result {
                    Ok(()) => {
                        tracing::info!(
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "applied"
                        );
                        applied = Some(a.revision);
                        running = Some(a.clone());
                        failed = None;
                    }
                    Err(e) => {
                        if attempts.0 != a.revision {
                            attempts = (a.revision, 0);
                        }
                        attempts.1 += 1;
                        failure(&span, &mut counters, e.category());
                        let message = format!("{e}{}", source_chain(&e));
                        tracing::warn!(error = %message, attempt = attempts.1, "apply failed");
                        if e.is_permanent() || attempts.1 >= REPORT_FAILURE_AFTER {
                            failed = Some(FailedApply {
                                revision: a.revision,
                                message,
                            });
                        }
                        let backoff = Duration::from_secs(5 * 2u64.pow(attempts.1.min(4)));
                        retry_at = Instant::now() + backoff;
                    }
                }
            }
            if applied.is_some() {
                match env.sync_bucket(&a).await {
                    Ok(out) => {
                        if out.dags.switched {
                            counters.dag_syncs_changed += 1;
                            tracing::info!(
                                env = %name,
                                downloaded = out.dags.downloaded.len(),
                                removed = out.dags.removed.len(),
                                bytes = out.dags.bytes,
                                "synced DAGs"
                            );
                        }
                        if out.plugins_changed && failed.is_none() {
                            tracing::info!(env = %name, "plugins changed; restarting what loads them");
                            let span = reconcile_span("restart for plugins", &a);
                            if let Err(e) = env.apply(&a).instrument(span.clone()).await {
                                failure(&span, &mut counters, e.category());
                                tracing::warn!(env = %name, error = %e, "failed to restart for new plugins");
                            }
                        }
                    }
                    Err(e) => {
                        counters.dag_syncs_failed += 1;
                        tracing::warn!(env = %name, error = %e, "failed to sync from the bucket")
                    }
                }
            }
            if let Some(r) = running.as_ref() {
                autoscale(
                    &mut env,
                    r,
                    &pool,
                    settings.capacity.worker_slots,
                    &mut scaler,
                )
                .await;
            }
            if let (Some(t), Ok(mut all)) = (env.cli_target(), targets.lock()) {
                if all.get(&id) != Some(t) {
                    all.insert(id, t.clone());
                }
            }
            let mut observed = env.observe(failed.clone()).await;
            observed.reconcile = Some(counters.clone());
            let due = last
                .as_ref()
                .is_none_or(|(o, at)| *o != observed || at.elapsed() >= REPORT_EVERY);
            if due {
                match client.report_observed(&settings.cell, id, &observed).await {
                    Ok(_) => last = Some((observed, Instant::now())),
                    Err(e) => tracing::warn!(env = %name, error = %e, "failed to report"),
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => {
                match settings.on_shutdown {
                    OnShutdown::Detach => env.detach(),
                    OnShutdown::Stop => {
                        let stopped = env.stop().await;
                        if let Err(e) = client.report_observed(&settings.cell, id, &stopped).await {
                            tracing::warn!(env = %name, error = %e, "failed to report the stop");
                        }
                    }
                }
                return;
            }
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(settings.tick) => {}
        }
    }
}

/// A reconcile step's span (exported as an OpenTelemetry trace when traces are on).
fn reconcile_span(step: &'static str, a: &Assignment) -> tracing::Span {
    tracing::info_span!(
        "reconcile",
        otel.name = %format_args!("reconcile {step}"),
        tenant = %a.tenant,
        env = %a.name,
        revision = a.revision,
        otel.status_code = tracing::field::Empty,
        error.category = tracing::field::Empty,
    )
}

/// Counts a failed reconcile step under `category` and marks its span as failed.
fn failure(span: &tracing::Span, counters: &mut ReconcileCounters, category: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.category", category);
    *counters.failures.entry(category.to_owned()).or_default() += 1;
}

/// An environment's scale-down hysteresis and the scaling steps it took under this agent.
struct Scaler {
    cooldown: Cooldown,
    ups: u64,
    downs: u64,
}

/// One autoscaling round for an environment: its demand joins the cell's pool, its share of
/// the pool is its target, new workers start at once into free slots, and surplus workers are
/// drained after the cooldown (at once when the pool owes their slots to others). Two
/// environments never both take the last free slot.
async fn autoscale<W: WorkerRuntime>(
    env: &mut W,
    a: &Assignment,
    pool: &Pool,
    slots: u32,
    scaler: &mut Scaler,
) {
    let (queued, running) = match env.task_counts(a).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(env = %a.name, error = %e, "no task counts yet");
            return;
        }
    };
    let demand = Demand {
        queued,
        running,
        concurrency: a.spec.worker_concurrency(),
        min_workers: a.spec.min_workers,
        max_workers: a.spec.max_workers,
        weight: a.spec.worker_weight,
    };
    let wanted = wanted_workers(&demand);
    let current = env.current_workers();
    let held = current + env.draining_workers();
    // The decision and the slots it takes are made under the pool's lock (no await inside).
    let (share, next) = {
        let Ok(mut p) = pool.lock() else { return };
        p.insert(a.id, Member { demand, held });
        let demands: Vec<Demand> = p.values().map(|m| m.demand).collect();
        let shares = allocate(slots, &demands);
        let share = p
            .keys()
            .position(|i| *i == a.id)
            .and_then(|i| shares.get(i).copied())
            .unwrap_or(a.spec.min_workers);
        let free = slots.saturating_sub(p.values().map(|m| m.held).sum());
        let step = decide(
            &mut scaler.cooldown,
            Instant::now(),
            current,
            wanted,
            share,
            free,
        );
        let next = match step {
            Step::Up(n) => {
                // The new workers' slots are taken now; draining ones keep theirs.
                p.insert(
                    a.id,
                    Member {
                        demand,
                        held: held + n,
                    },
                );
                current + n
            }
            Step::Down(n) => current - n,
            Step::Hold => current,
        };
        (share, next)
    };
    if next != current {
        tracing::info!(env = %a.name, queued, running, wanted, share, from = current, to = next, "scaling workers");
        match env.scale_to(a, next).await {
            Ok(()) if next > current => scaler.ups += 1,
            Ok(()) => scaler.downs += 1,
            Err(e) => tracing::warn!(env = %a.name, error = %e, "failed to scale workers"),
        }
    }
    env.set_worker_status(WorkerStatus {
        queued,
        running,
        desired: share,
        actual: env.current_workers(),
        draining: env.draining_workers(),
        scale_ups: scaler.ups,
        scale_downs: scaler.downs,
    });
}

pub(crate) fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!(": {s}"));
        cur = s.source();
    }
    out
}
