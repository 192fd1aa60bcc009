//! Worker autoscaling decisions, as pure functions of what was observed (no I/O, time passed
//! in), so the process and Kubernetes runtimes and the simulator share them:
//!
//! - [`wanted_workers`]: what one environment asks for,
//!   `clamp(ceil((queued + running) / worker_concurrency), min_workers, max_workers)`;
//! - [`allocate`]: a cell's pool of worker slots split among its environments: every
//!   environment's guaranteed minimum first, the rest by weighted max-min fair share, never
//!   beyond what an environment wants (and so never beyond its `max_workers`);
//! - [`Cooldown`]: scale up at once, scale down only once the lower target has held for the
//!   cooldown. Scaling down is done by the runtime by draining (Celery warm shutdown), never by
//!   killing a busy worker; this module only says how many.
//! - [`decide`]: one environment's step given its share, its wish and the pool's free slots:
//!   new workers only into free slots (draining workers still hold theirs), and a share cut by
//!   the pool (others are owed slots) drains at once instead of after the cooldown.

use std::time::{Duration, Instant};

use hangar_tenants::api::Assignment;
use hangar_tenants::WorkerStatus;

/// An error of a runtime's scaling operation.
pub type ScaleError = Box<dyn std::error::Error + Send + Sync>;

/// What the agent's autoscaler needs from a runtime's environment: the task signal, its
/// workers, and a way to change how many run. The process runtime implements it with Celery
/// worker processes, a surplus one getting a warm shutdown; a Kubernetes runtime implements it
/// with a worker Deployment's replicas, deleting a pod only once it has drained.
pub trait WorkerRuntime {
    /// Task instances (queued, running) in the environment's Airflow.
    fn task_counts(
        &mut self,
        a: &Assignment,
    ) -> impl std::future::Future<Output = Result<(u32, u32), ScaleError>> + Send;
    /// Workers taking tasks.
    fn current_workers(&self) -> u32;
    /// Retired workers still finishing their tasks (they hold their pool slots).
    fn draining_workers(&self) -> u32;
    /// Runs `n` workers for `a` (already applied): new ones start now, surplus ones drain.
    fn scale_to(
        &mut self,
        a: &Assignment,
        n: u32,
    ) -> impl std::future::Future<Output = Result<(), ScaleError>> + Send;
    /// What the autoscaler saw and decided, for the environment's report.
    fn set_worker_status(&mut self, status: WorkerStatus);
}

/// Memory a worker slot is budgeted at: a Celery worker and its running tasks, measured at
/// 0.3–1 GB on the process runtime (Airflow 3.3, concurrency 5).
const SLOT_MEMORY_MIB: u64 = 1024;

/// The process runtime's default pool: two worker slots per core, no more than the memory
/// budget allows (`mem_total_mib` / 1 GiB), at least one.
pub fn default_worker_slots(cores: usize, mem_total_mib: u64) -> u32 {
    let by_cores = u64::try_from(cores).unwrap_or(1).saturating_mul(2);
    let by_memory = mem_total_mib / SLOT_MEMORY_MIB;
    u32::try_from(by_cores.min(by_memory).max(1)).unwrap_or(u32::MAX)
}

/// [`default_worker_slots`] of this machine (`/proc/meminfo`'s `MemTotal`).
pub fn machine_worker_slots() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    default_worker_slots(cores, machine_memory_mib())
}

/// This machine's memory in MiB (`/proc/meminfo`'s `MemTotal`; 4 GiB if unreadable).
pub fn machine_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4096, |kib| kib / 1024)
}

/// One environment's demand on its cell's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Task instances queued (waiting for a worker slot).
    pub queued: u32,
    /// Task instances running.
    pub running: u32,
    /// Tasks one worker runs at once (the environment class's concurrency); at least 1.
    pub concurrency: u32,
    pub min_workers: u32,
    pub max_workers: u32,
    /// Share of contended capacity relative to the other environments (at least 1).
    pub weight: u32,
}

/// The workers an environment wants: enough for everything queued and running, within its
/// bounds.
pub fn wanted_workers(d: &Demand) -> u32 {
    let tasks = d.queued.saturating_add(d.running);
    let need = tasks.div_ceil(d.concurrency.max(1));
    need.clamp(d.min_workers, d.max_workers.max(d.min_workers))
}

/// Splits `pool` worker slots among `demands` (same order). Guaranteed minimums are honoured
/// even when they alone exceed the pool (admission keeps that from happening); what remains
/// goes one slot at a time to the environment with unmet demand whose extra slots per weight
/// are fewest (ties to the first), which is weighted max-min fairness in whole slots.
pub fn allocate(pool: u32, demands: &[Demand]) -> Vec<u32> {
    let wanted: Vec<u32> = demands.iter().map(wanted_workers).collect();
    let mut given: Vec<u32> = demands
        .iter()
        .zip(&wanted)
        .map(|(d, w)| d.min_workers.min(*w))
        .collect();
    let mut left = pool.saturating_sub(given.iter().sum());
    while left > 0 {
        // Extra slots per unit of weight, compared as fractions: a/wa < b/wb ⇔ a·wb < b·wa.
        let next = (0..demands.len())
            .filter(|&i| given[i] < wanted[i])
            .min_by(|&a, &b| {
                let extra = |i: usize| u64::from(given[i] - demands[i].min_workers.min(wanted[i]));
                let weight = |i: usize| u64::from(demands[i].weight.max(1));
                (extra(a) * weight(b)).cmp(&(extra(b) * weight(a)))
            });
        let Some(i) = next else { break };
        given[i] += 1;
        left -= 1;
    }
    given
}

/// Scale-down hysteresis for one environment.
#[derive(Debug, Clone)]
pub struct Cooldown {
    period: Duration,
    /// Since when the target has been below the current workers.
    lower_since: Option<Instant>,
}

/// What to do with an environment's workers now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start this many workers now.
    Up(u32),
    /// Drain this many workers (they finish their tasks, then exit).
    Down(u32),
    Hold,
}

impl Cooldown {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            lower_since: None,
        }
    }

    /// The step from `current` workers (not counting draining ones) towards `target` at `now`.
    pub fn step(&mut self, now: Instant, current: u32, target: u32) -> Step {
        if target >= current {
            self.lower_since = None;
            return if target > current {
                Step::Up(target - current)
            } else {
                Step::Hold
            };
        }
        let since = *self.lower_since.get_or_insert(now);
        if now.duration_since(since) >= self.period {
            self.lower_since = None;
            Step::Down(current - target)
        } else {
            Step::Hold
        }
    }
}

/// One environment's step now. `current`: its workers taking tasks; `wanted`:
/// [`wanted_workers`]; `share`: its [`allocate`] share (≤ `wanted`); `free`: pool slots held by
/// nobody (workers draining anywhere still hold theirs).
pub fn decide(
    cooldown: &mut Cooldown,
    now: Instant,
    current: u32,
    wanted: u32,
    share: u32,
    free: u32,
) -> Step {
    if share < current && share < wanted {
        // The pool, not a drop in demand, lowers the target: other environments wait for these
        // slots, so the surplus drains now (its running tasks still finish).
        cooldown.lower_since = None;
        return Step::Down(current - share);
    }
    match cooldown.step(now, current, share) {
        Step::Up(n) if n.min(free) == 0 => Step::Hold,
        Step::Up(n) => Step::Up(n.min(free)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn d(queued: u32, running: u32, min: u32, max: u32, weight: u32) -> Demand {
        Demand {
            queued,
            running,
            concurrency: 5,
            min_workers: min,
            max_workers: max,
            weight,
        }
    }

    #[rstest]
    #[case::idle_scales_to_zero(0, 0, 0, 10, 0)]
    #[case::idle_keeps_the_minimum(0, 0, 2, 10, 2)]
    #[case::one_task_one_worker(1, 0, 0, 10, 1)]
    #[case::rounds_up(6, 0, 0, 10, 2)]
    #[case::running_counts(3, 7, 0, 10, 2)]
    #[case::capped_at_max(100, 0, 0, 4, 4)]
    #[case::max_below_min_keeps_min(0, 0, 3, 1, 3)]
    fn wanted(
        #[case] queued: u32,
        #[case] running: u32,
        #[case] min: u32,
        #[case] max: u32,
        #[case] want: u32,
    ) {
        assert_eq!(wanted_workers(&d(queued, running, min, max, 1)), want);
    }

    #[test]
    fn a_zero_concurrency_counts_as_one() {
        let mut x = d(3, 0, 0, 10, 1);
        x.concurrency = 0;
        assert_eq!(wanted_workers(&x), 3);
    }

    #[rstest]
    #[case::room_for_everyone(20, vec![d(10, 0, 0, 10, 1), d(5, 0, 0, 10, 1)], vec![2, 1])]
    #[case::nobody_wants_anything(8, vec![d(0, 0, 0, 10, 1), d(0, 0, 0, 10, 3)], vec![0, 0])]
    #[case::equal_weights_split_evenly(6, vec![d(50, 0, 0, 10, 1), d(50, 0, 0, 10, 1)], vec![3, 3])]
    #[case::weights_two_to_one(9, vec![d(50, 0, 0, 10, 2), d(50, 0, 0, 10, 1)], vec![6, 3])]
    #[case::small_demand_frees_slots_for_the_rest(10, vec![d(5, 0, 0, 10, 1), d(50, 0, 0, 10, 1), d(50, 0, 0, 10, 1)], vec![1, 5, 4])]
    #[case::max_workers_is_a_ceiling(10, vec![d(50, 0, 0, 2, 5), d(50, 0, 0, 10, 1)], vec![2, 8])]
    #[case::guarantees_first(4, vec![d(0, 0, 3, 10, 1), d(50, 0, 0, 10, 10)], vec![3, 1])]
    #[case::guarantees_honoured_past_the_pool(2, vec![d(0, 0, 2, 10, 1), d(0, 0, 2, 10, 1)], vec![2, 2])]
    #[case::guarantee_then_weighted_extra(10, vec![d(50, 0, 4, 10, 1), d(50, 0, 0, 10, 1)], vec![7, 3])]
    fn shares(#[case] pool: u32, #[case] demands: Vec<Demand>, #[case] want: Vec<u32>) {
        let got = allocate(pool, &demands);
        assert_eq!(got, want);
        let guaranteed: u32 = demands.iter().map(|x| x.min_workers).sum();
        assert!(got.iter().sum::<u32>() <= pool.max(guaranteed));
        for (g, x) in got.iter().zip(&demands) {
            assert!(*g >= x.min_workers.min(wanted_workers(x)), "guarantee kept");
            assert!(*g <= wanted_workers(x), "never more than wanted");
        }
    }

    #[test]
    fn scaling_up_is_immediate_and_down_waits_for_the_cooldown() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut c = Cooldown::new(Duration::from_secs(60));
        assert_eq!(c.step(s(0), 0, 3), Step::Up(3));
        assert_eq!(c.step(s(1), 3, 3), Step::Hold);
        assert_eq!(
            c.step(s(10), 3, 0),
            Step::Hold,
            "lower target starts the cooldown"
        );
        assert_eq!(c.step(s(40), 3, 1), Step::Hold);
        assert_eq!(c.step(s(70), 3, 1), Step::Down(2), "held lower for 60 s");
        // Demand coming back resets the cooldown.
        assert_eq!(c.step(s(80), 1, 0), Step::Hold);
        assert_eq!(c.step(s(100), 1, 2), Step::Up(1));
        assert_eq!(c.step(s(110), 2, 0), Step::Hold);
        assert_eq!(
            c.step(s(150), 2, 0),
            Step::Hold,
            "only 40 s since it went lower again"
        );
        assert_eq!(c.step(s(170), 2, 0), Step::Down(2));
    }

    #[rstest]
    #[case::up_into_free_slots(0, 3, 3, 5, Step::Up(3))]
    #[case::up_only_as_far_as_the_pool_is_free(0, 3, 3, 1, Step::Up(1))]
    #[case::no_free_slot_waits(1, 3, 3, 0, Step::Hold)]
    #[case::steady(2, 2, 2, 0, Step::Hold)]
    #[case::demand_drop_waits_for_the_cooldown(3, 1, 1, 0, Step::Hold)]
    #[case::pool_cut_drains_at_once(4, 6, 3, 0, Step::Down(1))]
    #[case::pool_cut_below_a_demand_drop(4, 3, 2, 0, Step::Down(2))]
    fn decisions(
        #[case] current: u32,
        #[case] wanted: u32,
        #[case] share: u32,
        #[case] free: u32,
        #[case] want: Step,
    ) {
        let mut c = Cooldown::new(Duration::from_secs(60));
        assert_eq!(
            decide(&mut c, Instant::now(), current, wanted, share, free),
            want
        );
    }

    #[test]
    fn a_demand_drop_drains_after_the_cooldown_even_with_no_free_slot() {
        let t0 = Instant::now();
        let mut c = Cooldown::new(Duration::from_secs(60));
        assert_eq!(decide(&mut c, t0, 3, 1, 1, 0), Step::Hold);
        assert_eq!(
            decide(&mut c, t0 + Duration::from_secs(61), 3, 1, 1, 0),
            Step::Down(2)
        );
    }

    #[rstest]
    #[case::cores_bound(2, 24_000, 4)]
    #[case::memory_bound(16, 8_192, 8)]
    #[case::tiny_machine_gets_one(1, 512, 1)]
    fn default_slots(#[case] cores: usize, #[case] mem: u64, #[case] want: u32) {
        assert_eq!(default_worker_slots(cores, mem), want);
    }
}
