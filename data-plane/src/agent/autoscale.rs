//! One autoscaling round of an environment inside its cell's worker pool: the environment's
//! demand joins the pool, its fair share is its target, and its runtime scales to it (see
//! [`crate::autoscaler`] for the pure decisions).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hangar_tenants::api::Assignment;
use hangar_tenants::WorkerStatus;
use uuid::Uuid;

use crate::autoscaler::{allocate, decide, wanted_workers, Cooldown, Demand, Step, WorkerRuntime};

/// Every environment of the cell in its worker pool: its task demand, which the pool is split
/// by, and the slots its workers hold (taking tasks or draining).
pub(crate) type Pool = Arc<Mutex<BTreeMap<Uuid, Member>>>;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    demand: Demand,
    held: u32,
}

/// Takes an environment out of the pool (deleted, or its reconciler stopped).
pub(crate) fn leave(pool: &Pool, id: Uuid) {
    super::supervise::lock(pool).remove(&id);
}

/// An environment's scale-down hysteresis and the scaling steps it took under this agent.
pub(crate) struct Scaler {
    cooldown: Cooldown,
    ups: u64,
    downs: u64,
}

/// One autoscaling round for an environment: its demand joins the cell's pool, its share of
/// the pool is its target, new workers start at once into free slots, and surplus workers are
/// drained after the cooldown (at once when the pool owes their slots to others). Two
/// environments never both take the last free slot.
pub(crate) async fn autoscale<W: WorkerRuntime>(
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
        let mut p = super::supervise::lock(pool);
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

impl Scaler {
    pub(crate) fn new(cooldown: Duration) -> Self {
        Self {
            cooldown: Cooldown::new(cooldown),
            ups: 0,
            downs: 0,
        }
    }
}
