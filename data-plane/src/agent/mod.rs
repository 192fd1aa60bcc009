//! The data-plane agent of one cell: registers with the control plane, long-polls the
//! environments placed on its cell, runs one task per environment that reconciles it with the
//! cell's runtime ([`crate::cell_runtime::Runtime`]: processes on this machine, or a
//! Kubernetes cluster; see [`reconcile`]), and reports what it observes. Everything it does is
//! idempotent: an agent restarted at any point picks up where the last one stopped (and adopts
//! what the last one left running).

mod autoscale;
mod reconcile;
pub mod supervise;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_client::Client;
use hangar_tenants::api::{Assignment, CellCapacity, RegisterCell};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cell_runtime::Runtime;
use crate::log_ship::LogSources;
use reconcile::{environment_task, Shared};
use supervise::supervise;

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
    /// Later sizes of the cell's worker pool (a Kubernetes cell's, read from its worker nodes):
    /// each is used at once and registered. `None`: `capacity.worker_slots` for good.
    pub worker_slots_updates: Option<watch::Receiver<u32>>,
    /// Prepared environments the cell keeps for new environments to claim
    /// (`HANGAR_WARM_POOL`).
    pub warm_pool: u32,
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
                    let target = supervise::lock(&targets).get(&call.environment_id).cloned();
                    let (client, cell) = (client.clone(), cell.clone());
                    running.spawn(async move {
                        let timeout = Duration::from_secs(u64::from(call.timeout_seconds));
                        let result =
                            crate::cli_runner::run_call(target.as_ref(), call.id, call.args, timeout)
                                .await;
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
        while let Some(ended) = running.try_join_next() {
            if let Err(Ok(payload)) = ended.map_err(tokio::task::JoinError::try_into_panic) {
                let message = supervise::panic_message(payload);
                tracing::error!(panic = %message, "an Airflow CLI command panicked; it is not answered");
            }
        }
    }
    running.shutdown().await;
}

/// Runs the agent until `cancel`.
pub async fn run<R: Runtime>(
    client: Client,
    settings: AgentSettings,
    runtime: R,
    cancel: CancellationToken,
) {
    let mut envs: HashMap<Uuid, watch::Sender<Assignment>> = HashMap::new();
    let pool: autoscale::Pool = Arc::default();
    let slots = Arc::new(AtomicU32::new(settings.capacity.worker_slots));
    let targets: CliTargets = Arc::default();
    let sources = LogSources::default();
    let tunnel = crate::tunnel::TunnelEnvironments::default();
    let mut tasks = JoinSet::new();
    // Each loop is started again should it panic (see [`supervise`]).
    let (c, cell, t, stop) = (
        client.clone(),
        settings.cell.clone(),
        tunnel.clone(),
        cancel.clone(),
    );
    tasks.spawn(supervise(
        "tunnel".to_owned(),
        move || crate::tunnel::run(c.clone(), cell.clone(), t.clone(), stop.clone()),
        cancel.clone(),
    ));
    let (c, cell, bucket, s, logs, stop) = (
        client.clone(),
        settings.cell.clone(),
        runtime.bucket().cloned(),
        sources.clone(),
        settings.logs.clone(),
        cancel.clone(),
    );
    tasks.spawn(supervise(
        "log shipper".to_owned(),
        move || {
            crate::log_ship::run(
                c.clone(),
                cell.clone(),
                bucket.clone(),
                s.clone(),
                logs.clone(),
                stop.clone(),
            )
        },
        cancel.clone(),
    ));
    let (c, cell, t, stop) = (
        client.clone(),
        settings.cell.clone(),
        targets.clone(),
        cancel.clone(),
    );
    tasks.spawn(supervise(
        "Airflow CLI loop".to_owned(),
        move || cli_loop(c.clone(), cell.clone(), t.clone(), stop.clone()),
        cancel.clone(),
    ));
    let isolation = runtime.isolation();
    let mut cursor = 0i64;
    let mut registered = false;
    let mut capacity = settings.capacity;
    let mut slot_updates = settings.worker_slots_updates.clone();
    while !cancel.is_cancelled() {
        if !registered {
            let req = RegisterCell {
                capacity,
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                isolation: Some(isolation.clone()),
                warm_pool: settings.warm_pool,
                agent_panics: supervise::panics(),
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
            Some(n) = next_slots(&mut slot_updates) => {
                if n != capacity.worker_slots {
                    tracing::info!(cell = %settings.cell, from = capacity.worker_slots, to = n, "worker pool resized; registering again");
                    capacity.worker_slots = n;
                    slots.store(n, Ordering::Relaxed);
                    registered = false;
                }
                continue;
            }
            () = supervise::panicked() => {
                // Registering again reports the count (`Cell::agent_panics`, `/metrics`).
                registered = false;
                continue;
            }
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
                            let shared = Shared {
                                pool: pool.clone(),
                                slots: slots.clone(),
                                targets: targets.clone(),
                                sources: sources.clone(),
                                tunnel: tunnel.clone(),
                            };
                            let (c, s, r, stop) = (
                                client.clone(),
                                settings.clone(),
                                runtime.clone(),
                                cancel.clone(),
                            );
                            // The supervisor keeps a receiver: a reconciler started again
                            // gets the newest assignment, and the environment is not taken
                            // for gone meanwhile.
                            tasks.spawn(supervise(
                                format!("environment {} ({})", assignment.id, assignment.name),
                                move || {
                                    environment_task(
                                        c.clone(),
                                        s.clone(),
                                        r.clone(),
                                        rx.clone(),
                                        shared.clone(),
                                        stop.clone(),
                                    )
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

/// The pool's next size, once it changes; never when there are no updates (any more).
async fn next_slots(updates: &mut Option<watch::Receiver<u32>>) -> Option<u32> {
    let Some(rx) = updates else {
        return std::future::pending().await;
    };
    match rx.changed().await {
        Ok(()) => Some(*rx.borrow_and_update()),
        Err(_) => {
            *updates = None;
            None
        }
    }
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) {
    tokio::select! {
        () = cancel.cancelled() => {},
        () = tokio::time::sleep(d) => {},
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn each_new_pool_size_is_seen_once_and_a_gone_source_is_left_alone() {
        let (tx, rx) = watch::channel(4);
        let mut updates = Some(rx);
        tx.send(6).unwrap();
        assert_eq!(next_slots(&mut updates).await, Some(6));
        let again = tokio::time::timeout(Duration::from_millis(20), next_slots(&mut updates));
        assert!(again.await.is_err(), "no change, nothing to see");
        drop(tx);
        assert_eq!(next_slots(&mut updates).await, None);
        assert!(updates.is_none());
        let never = tokio::time::timeout(Duration::from_millis(20), next_slots(&mut updates));
        assert!(never.await.is_err(), "without updates it waits for good");
        let mut none = None;
        let never = tokio::time::timeout(Duration::from_millis(20), next_slots(&mut none));
        assert!(never.await.is_err());
    }
}
