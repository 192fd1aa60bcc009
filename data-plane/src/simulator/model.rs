//! The three worker policies the simulator compares, each as one [`Model`] whose numbers say
//! what they model and where they come from.

use serde::Serialize;

/// Which way of running workers a [`Model`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Hangar: every environment at `min_workers = 0` on one cell's shared pool of worker slots.
    Hangar,
    /// MWAA-like: every environment keeps its own always-on worker and autoscales slowly.
    Dedicated,
    /// Airflow Helm chart with KEDA: per-environment autoscaling from zero, no shared pool.
    Keda,
    /// Hangar's executor: one cell-wide pool of task slots, each task its own process in its
    /// environment's runtime (replayed by [`super::task_pool`]).
    #[serde(rename = "hangar-tasks")]
    HangarTasks,
}

impl Policy {
    pub const ALL: [Policy; 4] = [
        Policy::Hangar,
        Policy::Dedicated,
        Policy::Keda,
        Policy::HangarTasks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Hangar => "hangar",
            Policy::Dedicated => "dedicated",
            Policy::Keda => "keda",
            Policy::HangarTasks => "hangar-tasks",
        }
    }
}

/// How one policy runs workers. Times in milliseconds of simulated time.
///
/// Every policy scales on the same demand, `autoscaler::wanted_workers` (queued + running over
/// the worker concurrency, clamped to `[min_workers, max_workers]`: Hangar's autoscaler,
/// MWAA's documented rule and the Airflow chart's KEDA query are that same formula), and
/// takes its steps with the agent's own `autoscaler::decide` (its `Cooldown` for scaling down;
/// with a shared pool, new workers only into free slots). Every policy scales down by draining
/// (a draining worker takes no new task and exits once its running tasks are done), so the
/// comparison is about capacity and waiting, never about lost tasks. That is generous to KEDA,
/// whose scale-down sends SIGTERM to a busy worker pod and can kill its tasks
/// (apache/airflow#26587), and to MWAA, which documents that tasks on a downscaled worker can
/// be marked failed (MWAA User Guide, "Configuring Amazon MWAA worker automatic scaling").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Model {
    pub policy: Policy,
    /// Task slots of one worker (Celery `worker_concurrency`).
    pub concurrency: u32,
    pub min_workers: u32,
    pub max_workers: u32,
    /// Worker slots of the shared pool (a cell's `CellCapacity::worker_slots`: one worker
    /// each, whatever its state: starting, running or draining), split among environments
    /// with `autoscaler::allocate`; `None` is no shared cap.
    pub pool_slots: Option<u32>,
    /// How often the autoscaler looks at demand.
    pub evaluate_every_ms: u64,
    /// From asking for a worker to it taking tasks.
    pub start_latency_ms: u64,
    /// How long a lower target must hold before workers are drained.
    pub cooldown_ms: u64,
    /// Whether the demand's `running` counts tasks still running on draining workers. That is
    /// what Airflow's running count reports, and so what an autoscaler reading it sees (true
    /// in every policy); `Cooldown::step` meanwhile counts only workers that are not draining,
    /// so after a drain the autoscaler asks for workers for tasks that already have a slot.
    /// False models a runtime that subtracts those tasks.
    pub demand_counts_draining: bool,
}

/// Celery `worker_concurrency` of Hangar's default `small` class (and MWAA's `mw1.small`).
pub const DEFAULT_CONCURRENCY: u32 = 5;
/// Hangar's default `max_workers` (and MWAA's default maximum worker count).
pub const DEFAULT_MAX_WORKERS: u32 = 10;
/// What every task of the Hangar executor pays before its code runs, in milliseconds: a new
/// Python process importing Airflow's task SDK (`execute_workload`, the supervisor and the
/// task runner) in an environment's runtime. `scripts/bench simulate` measures it on its
/// machine and replays with that; this default is its median there on the 2-core development
/// machine (docs/benchmarks.md).
pub const DEFAULT_TASK_START_MS: u64 = 1_720;

impl Model {
    /// Hangar's shared pool: `min_workers = 0`; the agent evaluates every 2 s (its tick); a
    /// Celery worker process is ready 5–8 s after it is started (measured on the process
    /// runtime, the upper end taken); drains after the autoscaler's 60 s cooldown. The pool
    /// size depends on the cell, so it is given.
    pub fn hangar(pool_slots: Option<u32>) -> Self {
        Self {
            policy: Policy::Hangar,
            concurrency: DEFAULT_CONCURRENCY,
            min_workers: 0,
            max_workers: DEFAULT_MAX_WORKERS,
            pool_slots,
            evaluate_every_ms: 2_000,
            start_latency_ms: 8_000,
            cooldown_ms: 60_000,
            demand_counts_draining: true,
        }
    }

    /// Dedicated, MWAA-like workers. What each number models:
    /// - `min_workers = 1`: an MWAA environment never has fewer than one worker (`MinWorkers`
    ///   is at least 1), so every environment pays for one worker around the clock;
    /// - evaluated every 60 s: MWAA scales on the CloudWatch metrics `RunningTasks` and
    ///   `QueuedTasks`, published at one-minute granularity;
    /// - 180 s start latency: a new Fargate worker container has to be placed, pull its image
    ///   and start Airflow; AWS only says it takes minutes, 3 min is our assumption;
    /// - 300 s cooldown: AWS documents that downscaling takes "between two to five minutes"
    ///   (metrics delay, detecting a steady state, removing the container); the upper end is
    ///   taken. A longer cooldown (the 10+ minutes sometimes observed) would only add idle
    ///   worker-hours to this policy.
    pub fn dedicated() -> Self {
        Self {
            policy: Policy::Dedicated,
            concurrency: DEFAULT_CONCURRENCY,
            min_workers: 1,
            max_workers: DEFAULT_MAX_WORKERS,
            pool_slots: None,
            evaluate_every_ms: 60_000,
            start_latency_ms: 180_000,
            cooldown_ms: 300_000,
            demand_counts_draining: true,
        }
    }

    /// The Airflow Helm chart's Celery workers scaled by KEDA, one environment per release,
    /// no shared cap. What each number models:
    /// - `min_workers = 0` (`minReplicaCount: 0`);
    /// - evaluated every 30 s and drained after 300 s: KEDA's `ScaledObject` defaults
    ///   (`pollingInterval: 30`, `cooldownPeriod: 300`; the HPA's default scale-down
    ///   stabilization window is also 300 s). The chart's own values.yaml sets
    ///   `pollingInterval: 5` and `cooldownPeriod: 30`, but that cooldown only governs the step
    ///   to zero; scale-downs between non-zero counts still wait the HPA's 300 s;
    /// - 45 s start latency: scheduling a pod on a node that has room, with the image cached,
    ///   and Airflow's Celery worker booting (30–60 s); a node added by the cluster autoscaler
    ///   would take minutes more, which is not modelled (nodes are assumed to be there).
    pub fn keda() -> Self {
        Self {
            policy: Policy::Keda,
            concurrency: DEFAULT_CONCURRENCY,
            min_workers: 0,
            max_workers: DEFAULT_MAX_WORKERS,
            pool_slots: None,
            evaluate_every_ms: 30_000,
            start_latency_ms: 45_000,
            cooldown_ms: 300_000,
            demand_counts_draining: true,
        }
    }

    /// The Hangar executor's cell-wide pool of `pool_slots` task slots (`None`: no cap). What
    /// each number models:
    /// - one task per slot (`concurrency = 1`), a slot held from the task's process start to
    ///   its end, then free for any environment;
    /// - `max_workers`: an environment's cap in task slots, the same 50 as the worker policies'
    ///   10 workers of 5 slots;
    /// - no evaluation tick and no cooldown: the scheduler hands a queued task to the agent at
    ///   once and a slot is freed when its task ends (`evaluate_every_ms = 0` means that);
    /// - `start_latency_ms`: the task's own start, `task_start_ms` (measured; see
    ///   [`DEFAULT_TASK_START_MS`]).
    pub fn hangar_tasks(pool_slots: Option<u32>, task_start_ms: u64) -> Self {
        Self {
            policy: Policy::HangarTasks,
            concurrency: 1,
            min_workers: 0,
            max_workers: DEFAULT_MAX_WORKERS * DEFAULT_CONCURRENCY,
            pool_slots,
            evaluate_every_ms: 0,
            start_latency_ms: task_start_ms,
            cooldown_ms: 0,
            demand_counts_draining: true,
        }
    }

    /// The default model of `policy`, with `pool_slots` for Hangar's shared pools (worker
    /// slots for [`Policy::Hangar`], task slots for [`Policy::HangarTasks`]).
    pub fn of(policy: Policy, pool_slots: Option<u32>) -> Self {
        match policy {
            Policy::Hangar => Self::hangar(pool_slots),
            Policy::Dedicated => Self::dedicated(),
            Policy::Keda => Self::keda(),
            Policy::HangarTasks => Self::hangar_tasks(pool_slots, DEFAULT_TASK_START_MS),
        }
    }
}
