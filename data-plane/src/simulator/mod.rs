//! The shared-pool simulator of issue 5 ("Shared worker capacity"): replays a multi-tenant
//! Airflow task trace through the autoscaler's own decision functions
//! ([`crate::autoscaler`]) under four policies, and reports worker-hours, pool utilization,
//! queue waits and fairness for each.
//!
//! - [`trace`]: the trace (arrival, environment, duration) and its CSV form;
//! - [`generate`](mod@generate): a seeded synthetic trace (hourly and daily DAGs, bursts, short and long tasks);
//! - [`model`]: the policies — Hangar's shared pool of workers, MWAA-like dedicated workers,
//!   KEDA per-environment autoscaling, the Hangar executor's pool of task slots — each with
//!   documented numbers;
//! - [`replay`](mod@replay): the event-driven replay, pure;
//! - [`task_pool`]: the replay of the Hangar executor's cell-wide pool of task slots;
//! - [`report`]: the figures and their definitions;
//! - [`hibernation`]: environment-hours awake with hibernation over the same trace.
//!
//! `hangar simulate` drives it from the command line and `scripts/bench simulate` writes its
//! figures to docs/benchmarks.md.

pub mod generate;
pub mod hibernation;
pub mod model;
pub mod replay;
pub mod report;
pub mod task_pool;
pub mod trace;

use serde::Serialize;

pub use generate::{generate, GenerateParams};
pub use model::{Model, Policy};
pub use replay::{replay, Outcome, ReplayError};
pub use report::{summarize, Report, ReportError};
pub use trace::{Task, Trace, TraceError};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimulateError {
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Replays `trace` under `model` and reports; refuses a replay that lost a task.
pub fn simulate(trace: &Trace, model: &Model) -> Result<Report, SimulateError> {
    let outcome = replay(trace, model)?;
    Ok(summarize(trace, model, &outcome)?)
}

/// What a trace asks of any policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceStats {
    pub environments: usize,
    pub tasks: usize,
    pub horizon_hours: f64,
    /// Σ task durations: the slot-hours every policy must provide.
    pub busy_slot_hours: f64,
    /// Busy slots on average over the horizon.
    pub mean_busy_slots: f64,
    /// Most tasks running at once if every task started on arrival.
    pub zero_wait_peak_tasks: u32,
    /// Most workers needed at once if every task started on arrival and every environment
    /// had exactly `ceil(running / concurrency)` workers (no start latency, no cooldown):
    /// the smallest pool that could serve the trace without queueing.
    pub zero_wait_peak_workers: u32,
    /// Worker-hours of that ideal: Σ over time of `ceil(running / concurrency)` per
    /// environment.
    pub zero_wait_worker_hours: f64,
    /// busy / (`zero_wait_worker_hours` × concurrency): the best utilization any policy with
    /// per-environment workers of `concurrency` slots can reach on this trace, since a worker
    /// serves one environment and a part-filled worker is paid in full.
    pub packing_bound_utilization: f64,
}

/// Statistics of `trace` for workers of `concurrency` slots.
pub fn trace_stats(trace: &Trace, concurrency: u32) -> TraceStats {
    let concurrency = concurrency.max(1);
    // (time, +1 | -1, env) with ends before starts at equal times.
    let mut events: Vec<(u64, i8, u32)> = trace
        .tasks()
        .iter()
        .flat_map(|t| {
            [
                (t.arrival_ms, 1, t.env),
                (t.arrival_ms + t.duration_ms, -1, t.env),
            ]
        })
        .collect();
    events.sort_unstable();
    let mut running = vec![0u32; trace.environments().len()];
    let (mut tasks, mut workers, mut peak_tasks, mut peak_workers) = (0u32, 0u32, 0u32, 0u32);
    let (mut worker_ms, mut last) = (0u64, 0u64);
    for (at, delta, env) in events {
        worker_ms += u64::from(workers) * (at - last);
        last = at;
        let r = &mut running[env as usize];
        let before = r.div_ceil(concurrency);
        if delta > 0 {
            *r += 1;
            tasks += 1;
        } else {
            *r -= 1;
            tasks -= 1;
        }
        workers = workers + r.div_ceil(concurrency) - before;
        peak_tasks = peak_tasks.max(tasks);
        peak_workers = peak_workers.max(workers);
    }
    let busy_ms = trace.busy_slot_ms() as f64;
    let horizon_ms = trace.horizon_ms().max(1) as f64;
    TraceStats {
        environments: trace.environments().len(),
        tasks: trace.tasks().len(),
        horizon_hours: (horizon_ms / 3_600_000.0 * 1000.0).round() / 1000.0,
        busy_slot_hours: (busy_ms / 3_600_000.0 * 100.0).round() / 100.0,
        mean_busy_slots: (busy_ms / horizon_ms * 100.0).round() / 100.0,
        zero_wait_peak_tasks: peak_tasks,
        zero_wait_peak_workers: peak_workers,
        zero_wait_worker_hours: (worker_ms as f64 / 3_600_000.0 * 100.0).round() / 100.0,
        packing_bound_utilization: (busy_ms / (worker_ms as f64 * f64::from(concurrency)).max(1.0)
            * 10_000.0)
            .round()
            / 10_000.0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use crate::autoscaler::{allocate, Demand};
    use rstest::rstest;

    const S: u64 = 1_000;

    fn task(arrival_s: u64, env: u32, duration_s: u64) -> Task {
        Task {
            arrival_ms: arrival_s * S,
            env,
            duration_ms: duration_s * S,
        }
    }

    fn trace(envs: usize, tasks: Vec<Task>) -> Trace {
        Trace::new(
            (0..envs).map(|i| format!("env-{i}")).collect(),
            tasks,
            3_600 * S,
        )
        .expect("valid trace")
    }

    fn generated() -> Trace {
        generate(&GenerateParams {
            tenants: 30,
            hours: 6,
            seed: 3,
        })
        .expect("generates")
    }

    #[rstest]
    #[case::hangar_on_an_evaluation(Model::hangar(None), 0, 8, Some(98))]
    #[case::hangar_between_evaluations(Model::hangar(None), 1, 9, Some(100))]
    #[case::hangar_in_a_pool(Model::hangar(Some(1)), 2, 8, Some(100))]
    #[case::keda(Model::keda(), 0, 45, Some(390))]
    #[case::keda_between_polls(Model::keda(), 10, 65, Some(420))]
    #[case::dedicated_has_a_worker_already(Model::dedicated(), 0, 0, None)]
    fn a_lone_task_waits_for_a_worker_start_and_the_worker_leaves_after_the_cooldown(
        #[case] model: Model,
        #[case] arrival_s: u64,
        #[case] wait_s: u64,
        #[case] exit_s: Option<u64>,
    ) {
        let t = trace(1, vec![task(arrival_s, 0, 30)]);
        let o = replay(&t, &model).expect("replays");
        assert_eq!(o.starts_ms[0], Some((arrival_s + wait_s) * S));
        assert_eq!(o.workers.len(), 1, "one worker is enough");
        // Hangar: the task ends at arrival + wait + 30 s; the next evaluation sees nothing
        // queued or running and the 60 s cooldown starts; KEDA the same on its 30 s polls
        // with 300 s; a dedicated worker stays to the end of the trace.
        let exit = o.workers[0].exit_ms;
        match exit_s {
            Some(s) => assert_eq!(exit, s * S),
            None => assert_eq!(exit, t.horizon_ms()),
        }
    }

    #[test]
    fn utilization_is_busy_over_provisioned_slot_seconds() {
        let t = trace(1, vec![task(0, 0, 30)]);
        let r = simulate(&t, &Model::hangar(None)).expect("simulates");
        // One worker from 0 s (asked) to 98 s (drained), 5 slots; 30 busy slot-seconds.
        assert_eq!(r.worker_hours, (98.0f64 / 3600.0 * 100.0).round() / 100.0);
        assert_eq!(r.utilization, (30.0f64 / (98.0 * 5.0) * 1e4).round() / 1e4);
        assert_eq!(r.tasks_completed, 1);
        assert_eq!(r.wait_p95_s, 8.0);
    }

    #[test]
    fn draining_workers_take_no_new_tasks_and_finish_theirs() {
        let mut tasks = vec![task(0, 0, 1_000)];
        tasks.extend((0..4).map(|_| task(0, 0, 10)));
        tasks.push(task(0, 0, 1_000));
        tasks.extend((0..5).map(|_| task(100, 0, 50)));
        let t = trace(1, tasks);
        let o = replay(&t, &Model::hangar(None)).expect("replays");
        // Six tasks want two workers, ready at 8 s; the busiest-first dispatch fills worker 0
        // with the first five, worker 1 gets the sixth (a long one).
        assert_eq!(
            o.worker_of[..6],
            [Some(0), Some(0), Some(0), Some(0), Some(0), Some(1)]
        );
        // The short ones end at 18 s: two tasks want one worker; 60 s later the newer of the
        // two equally busy workers drains, with its long task still running.
        assert_eq!(o.workers[1].drain_ms, Some(78 * S));
        assert_eq!(o.workers[1].exit_ms, 1_008 * S, "exits when its task ends");
        // At 100 s five tasks arrive: four fill worker 0; the fifth is not given to draining
        // worker 1 (four free slots) but waits for a new worker.
        assert!(o.worker_of[6..10].iter().all(|w| *w == Some(0)));
        assert_eq!(o.worker_of[10], Some(2));
        assert_eq!(o.starts_ms[10], Some(108 * S));
    }

    /// Checks what must hold in any replay: every task ran once, on a worker of its own
    /// environment that was ready and not draining, and no worker ran more than its slots.
    fn assert_sound(t: &Trace, m: &Model, o: &Outcome) {
        let n = t.tasks().len();
        assert_eq!(o.started, n, "{:?}: every task started once", m.policy);
        assert_eq!(o.completed, n, "{:?}: every task completed once", m.policy);
        let mut per_worker: Vec<Vec<(u64, i32)>> = vec![Vec::new(); o.workers.len()];
        for (i, task) in t.tasks().iter().enumerate() {
            let start = o.starts_ms[i].expect("started");
            let w = o.worker_of[i].expect("has a worker") as usize;
            let span = &o.workers[w];
            assert!(start >= task.arrival_ms);
            assert_eq!(span.env, task.env, "ran in its own environment");
            assert!(
                span.ready_ms.is_some_and(|r| r <= start),
                "worker was ready"
            );
            // At equal times tasks are dispatched before the autoscaler evaluates, so a task
            // may start in the same millisecond its worker is then drained.
            assert!(
                span.drain_ms.is_none_or(|d| start <= d),
                "not given to a draining worker"
            );
            assert!(start + task.duration_ms <= span.exit_ms, "never killed");
            per_worker[w].push((start, 1));
            per_worker[w].push((start + task.duration_ms, -1));
        }
        for events in &mut per_worker {
            events.sort_unstable();
            let mut running = 0;
            for (_, d) in events.iter() {
                running += d;
                assert!(running <= m.concurrency as i32, "slots never exceeded");
            }
        }
        if let Some(pool) = m.pool_slots {
            assert!(o.peak_workers <= pool, "pool never exceeded");
        }
    }

    #[rstest]
    #[case::hangar(Model::hangar(None))]
    #[case::hangar_small_pool(Model::hangar(Some(12)))]
    #[case::dedicated(Model::dedicated())]
    #[case::keda(Model::keda())]
    #[case::hangar_tasks(Model::hangar_tasks(None, 2_000))]
    #[case::hangar_tasks_small_pool(Model::hangar_tasks(Some(12), 2_000))]
    fn no_task_is_lost_started_twice_or_killed(#[case] model: Model) {
        let t = generated();
        let o = replay(&t, &model).expect("replays");
        assert_sound(&t, &model, &o);
        let r = summarize(&t, &model, &o).expect("reports");
        assert_eq!(r.tasks_completed, t.tasks().len());
    }

    #[test]
    fn a_report_refuses_a_lost_task() {
        let t = trace(1, vec![task(0, 0, 30), task(1, 0, 30)]);
        let m = Model::hangar(None);
        let mut o = replay(&t, &m).expect("replays");
        o.completed -= 1;
        o.starts_ms[1] = None;
        assert_eq!(
            summarize(&t, &m, &o),
            Err(ReportError::LoseTasks {
                policy: "hangar",
                tasks: 2,
                started: 2,
                completed: 1
            })
        );
    }

    #[test]
    fn dedicated_never_drops_below_one_worker_per_environment() {
        let t = generated();
        let m = Model::dedicated();
        let o = replay(&t, &m).expect("replays");
        for env in 0..t.environments().len() as u32 {
            // Workers not draining over time: +1 when asked for, -1 when drained or gone.
            let mut events: Vec<(u64, i32)> = o
                .workers
                .iter()
                .filter(|w| w.env == env)
                .flat_map(|w| [(w.requested_ms, 1), (w.drain_ms.unwrap_or(w.exit_ms), -1)])
                .collect();
            events.sort_by_key(|&(at, d)| (at, -d));
            let mut current = 0;
            for (at, d) in events {
                current += d;
                assert!(current >= 1 || at >= o.end_ms, "env {env} at {at} ms");
            }
        }
        assert!(o.workers.len() > t.environments().len(), "it did scale up");
    }

    #[test]
    fn a_pool_smaller_than_demand_is_split_by_allocate() {
        // Three environments want 10, 10 and 1 workers at once; the pool holds 5.
        let mut tasks: Vec<Task> = (0..100).map(|i| task(0, i % 2, 600)).collect();
        tasks.push(task(0, 2, 600));
        let t = trace(3, tasks);
        let o = replay(&t, &Model::hangar(Some(5))).expect("replays");
        let demand = |queued| Demand {
            queued,
            running: 0,
            concurrency: 5,
            min_workers: 0,
            max_workers: 10,
            weight: 1,
        };
        let want = allocate(5, &[demand(50), demand(50), demand(1)]);
        assert_eq!(want, vec![2, 2, 1]);
        let started_at_zero = |env| {
            o.workers
                .iter()
                .filter(|w| w.env == env && w.requested_ms == 0)
                .count() as u32
        };
        assert_eq!(
            (0..3).map(started_at_zero).collect::<Vec<_>>(),
            want,
            "the first evaluation starts what allocate gives"
        );
        assert_eq!(o.peak_workers, 5);
        assert_sound(&t, &Model::hangar(Some(5)), &o);
    }

    #[rstest]
    #[case::counted_as_airflow_does(true, 3)]
    #[case::subtracted(false, 2)]
    fn tasks_on_draining_workers_in_the_demand(#[case] counts: bool, #[case] workers: usize) {
        // Two workers with one long task each; one drains (two tasks want one worker). Then
        // four short tasks arrive and fit the remaining worker. Counting the draining worker's
        // task, 1 + 1 + 4 = 6 tasks want two workers and one more is started for nothing.
        let mut tasks = vec![task(0, 0, 1_000)];
        tasks.extend((0..4).map(|_| task(0, 0, 10)));
        tasks.push(task(0, 0, 1_000));
        tasks.extend((0..4).map(|_| task(100, 0, 50)));
        let t = trace(1, tasks);
        let m = Model {
            demand_counts_draining: counts,
            ..Model::hangar(None)
        };
        let o = replay(&t, &m).expect("replays");
        assert_eq!(o.workers[1].drain_ms, Some(78 * S));
        assert!(o.worker_of[6..].iter().all(|w| *w == Some(0)));
        assert_eq!(o.workers.len(), workers);
        assert_sound(&t, &m, &o);
    }

    #[test]
    fn a_replay_is_deterministic() {
        let t = generated();
        let m = Model::hangar(Some(20));
        assert_eq!(replay(&t, &m), replay(&t, &m));
    }

    #[rstest]
    #[case::concurrency(Model { concurrency: 0, ..Model::hangar(None) }, "concurrency")]
    #[case::max_workers(Model { max_workers: 0, ..Model::keda() }, "max_workers")]
    #[case::pool(Model::hangar(Some(0)), "pool_slots")]
    #[case::evaluation(Model { evaluate_every_ms: 0, ..Model::dedicated() }, "evaluate_every_ms")]
    #[case::tasks_share_no_slot(Model { concurrency: 5, ..Model::hangar_tasks(None, 0) }, "concurrency")]
    #[case::tasks_pool(Model::hangar_tasks(Some(0), 0), "pool_slots")]
    fn a_model_that_cannot_run_tasks_is_refused(#[case] model: Model, #[case] field: &str) {
        let e = replay(&trace(1, vec![task(0, 0, 1)]), &model).expect_err("refused");
        assert!(e.to_string().contains(field), "{e}");
    }

    #[test]
    fn a_pooled_task_waits_only_for_its_own_start_and_frees_its_slot_when_it_ends() {
        let t = trace(1, vec![task(5, 0, 30), task(50, 0, 10)]);
        let m = Model::hangar_tasks(Some(1), 2_000);
        let o = replay(&t, &m).expect("replays");
        assert_eq!(o.starts_ms, [Some(7 * S), Some(52 * S)]);
        assert_eq!(o.workers.len(), 2, "one slot span per task");
        assert_eq!(
            (o.workers[0].requested_ms, o.workers[0].exit_ms),
            (5 * S, 37 * S),
            "held from its process start to its end"
        );
        let r = summarize(&t, &m, &o).expect("reports");
        // 40 busy slot-seconds of 44 provisioned (2 s start each).
        assert_eq!(r.utilization, (40.0f64 / 44.0 * 1e4).round() / 1e4);
        assert_eq!(r.wait_p95_s, 2.0);
    }

    #[test]
    fn a_contended_task_pool_is_split_by_allocate() {
        // Three environments want 10, 10 and 1 slots at once; the pool holds 5.
        let mut tasks: Vec<Task> = (0..20).map(|i| task(0, i % 2, 600)).collect();
        tasks.push(task(0, 2, 600));
        let t = trace(3, tasks);
        let m = Model::hangar_tasks(Some(5), 1_000);
        let o = replay(&t, &m).expect("replays");
        let demand = |queued| Demand {
            queued,
            running: 0,
            concurrency: 1,
            min_workers: 0,
            max_workers: 50,
            weight: 1,
        };
        let want = allocate(5, &[demand(10), demand(10), demand(1)]);
        assert_eq!(want, vec![2, 2, 1]);
        let started_at_zero = |env| {
            o.workers
                .iter()
                .filter(|w| w.env == env && w.requested_ms == 0)
                .count() as u32
        };
        assert_eq!((0..3).map(started_at_zero).collect::<Vec<_>>(), want);
        assert_eq!(o.peak_workers, 5);
        assert_sound(&t, &m, &o);
    }

    #[test]
    fn a_freed_slot_goes_to_the_environment_below_its_share_before_older_tasks() {
        // Pool of 2: env 0 takes both at 0 s and queues a third task; env 1 queues one at 1 s.
        // When env 0's short task ends, env 1 (share 1, none running) gets the slot although
        // env 0's queued task is older.
        let t = trace(
            2,
            vec![
                task(0, 0, 10),
                task(0, 0, 1_000),
                task(0, 0, 10),
                task(1, 1, 10),
            ],
        );
        let o = replay(&t, &Model::hangar_tasks(Some(2), 0)).expect("replays");
        assert_eq!(
            o.starts_ms[3],
            Some(10 * S),
            "env 1 gets the first free slot"
        );
        assert_eq!(
            o.starts_ms[2],
            Some(20 * S),
            "env 0's third waits for the next"
        );
    }

    #[test]
    fn an_unlimited_task_pool_starts_every_task_at_once_up_to_the_environment_cap() {
        let tasks: Vec<Task> = (0..60).map(|_| task(0, 0, 10)).collect();
        let o = replay(&trace(1, tasks), &Model::hangar_tasks(None, 0)).expect("replays");
        let at_zero = o.starts_ms.iter().filter(|s| **s == Some(0)).count();
        assert_eq!(at_zero, 50, "the environment's cap of 50 slots");
        assert_eq!(o.peak_workers, 50);
    }

    #[test]
    fn trace_stats_count_the_zero_wait_peak() {
        // env 0: 7 tasks at once (2 workers), env 1: 1 task overlapping (1 worker); a task
        // starting exactly when another ends does not overlap it.
        let mut tasks: Vec<Task> = (0..7).map(|_| task(0, 0, 10)).collect();
        tasks.push(task(5, 1, 10));
        tasks.push(task(15, 1, 10));
        let s = trace_stats(&trace(2, tasks), 5);
        assert_eq!(s.zero_wait_peak_tasks, 8);
        assert_eq!(s.zero_wait_peak_workers, 3);
        assert_eq!(s.tasks, 9);
        // Workers over time: 2 (0–5 s), 3 (5–10 s), 1 (10–25 s) = 40 worker-seconds, or 200
        // slot-seconds for 7·10 + 2·10 = 90 busy ones.
        assert_eq!(
            s.zero_wait_worker_hours,
            (40.0f64 / 3600.0 * 100.0).round() / 100.0
        );
        assert_eq!(s.packing_bound_utilization, 0.45);
    }
}
