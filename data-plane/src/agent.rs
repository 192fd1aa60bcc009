//! The data-plane agent of one cell: registers with the control plane, long-polls the
//! environments placed on its cell, runs one task per environment that reconciles it with the
//! process runtime, and reports what it observes. Everything it does is idempotent: an agent
//! restarted at any point picks up where the last one stopped (and re-adopts the processes it
//! left running).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hangar_client::Client;
use hangar_tenants::api::{Assignment, CellCapacity, RegisterCell};
use hangar_tenants::{FailedApply, ObservedState};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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
    let mut tasks = JoinSet::new();
    let mut cursor = 0i64;
    let mut registered = false;
    while !cancel.is_cancelled() {
        if !registered {
            let req = RegisterCell {
                capacity: settings.capacity,
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
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

/// Reconciles one environment until it is deleted or the agent stops.
async fn environment_task(
    client: Client,
    settings: AgentSettings,
    platform: Platform,
    mut rx: watch::Receiver<Assignment>,
    cancel: CancellationToken,
) {
    let first = rx.borrow().clone();
    let (id, name) = (first.id, format!("{}/{}", first.tenant, first.name));
    let mut env = ProcessEnvironment::new(platform, &first);
    let mut applied: Option<i64> = None;
    let mut failed: Option<FailedApply> = None;
    let mut attempts: (i64, u32) = (0, 0);
    let mut retry_at = Instant::now();
    let mut last: Option<(ObservedState, Instant)> = None;
    loop {
        let a = rx.borrow_and_update().clone();
        if a.delete {
            match env.delete(&a).await {
                Ok(()) => {
                    let gone = ObservedState {
                        deleted: true,
                        ..Default::default()
                    };
                    match client.report_observed(&settings.cell, id, &gone).await {
                        Ok(_) => {
                            tracing::info!(env = %name, "deleted");
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
                let span = tracing::info_span!("apply", env = %name, revision = a.revision);
                let _enter = span.enter();
                let started = Instant::now();
                match env.apply(&a).await {
                    Ok(()) => {
                        tracing::info!(
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "applied"
                        );
                        applied = Some(a.revision);
                        failed = None;
                    }
                    Err(e) => {
                        if attempts.0 != a.revision {
                            attempts = (a.revision, 0);
                        }
                        attempts.1 += 1;
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
                            if let Err(e) = env.apply(&a).await {
                                tracing::warn!(env = %name, error = %e, "failed to restart for new plugins");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(env = %name, error = %e, "failed to sync from the bucket")
                    }
                }
            }
            let observed = env.observe(failed.clone()).await;
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

pub(crate) fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!(": {s}"));
        cur = s.source();
    }
    out
}
