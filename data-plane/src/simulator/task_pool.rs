//! Replays a [`Trace`] through the Hangar executor's cell-wide pool of task slots
//! ([`Policy::HangarTasks`](super::Policy::HangarTasks)): every task runs as its own process in
//! its environment's runtime, so a slot is held from the moment the agent starts the task's
//! process until the task ends, and is free for any environment's next task the moment it
//! does. There is no worker to start, keep or drain; the price of that is the task's own start
//! (`start_latency_ms`: Python and Airflow's imports, paid by every task).
//!
//! What happens, in order at equal times: tasks finish, tasks arrive, then queued tasks are
//! given the free slots.
//! - Uncontended (every queued task that its environment's cap allows fits the free slots):
//!   they all start.
//! - Contended: the pool is split with the autoscaler's own [`allocate`] over the environments
//!   with queued or running tasks (one slot per task, weights equal, caps of `max_workers`
//!   slots), and the free slots go one at a time to the environment furthest below its share
//!   (ties to the one whose oldest queued task came first). Running tasks are never stopped,
//!   so an environment above its share keeps its slots until its tasks end.
//! - A task starts (its code runs) `start_latency_ms` after its slot is given, and holds the
//!   slot until it ends. Each task is reported as a one-slot "worker" ([`WorkerSpan`]) from
//!   slot given to task end, so [`summarize`](super::summarize) counts it like the worker
//!   policies: the start is paid for.
//!
//! Pure, like [`replay`](super::replay()): simulated milliseconds only, no I/O.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::autoscaler::{allocate, Demand};

use super::model::Model;
use super::replay::{Outcome, ReplayError, WorkerSpan};
use super::trace::Trace;

/// Replays `trace` under the task-pool `model` (its `concurrency` must be 1: one task per slot).
pub fn replay_tasks(trace: &Trace, model: &Model) -> Result<Outcome, ReplayError> {
    let check = |ok: bool, field| {
        if ok {
            Ok(())
        } else {
            Err(ReplayError::CheckModel {
                policy: model.policy.name(),
                field,
            })
        }
    };
    check(model.concurrency == 1, "concurrency")?;
    check(model.max_workers >= 1, "max_workers")?;
    check(model.pool_slots != Some(0), "pool_slots")?;

    let tasks = trace.tasks();
    let n = tasks.len();
    let envs = trace.environments().len();
    let mut pool = Pool {
        model: *model,
        queues: vec![VecDeque::new(); envs],
        running: vec![0; envs],
        alive: 0,
        peak: 0,
        finishes: BinaryHeap::new(),
        spans: Vec::with_capacity(n),
        starts_ms: vec![None; n],
        worker_of: vec![None; n],
        started: 0,
        completed: 0,
    };
    let mut next = 0usize;
    let mut last_finish = 0;
    loop {
        let finish = pool.finishes.peek().map(|Reverse((at, _))| *at);
        let arrival = tasks.get(next).map(|t| t.arrival_ms);
        let now = match (finish, arrival) {
            (Some(f), Some(a)) => f.min(a),
            (Some(f), None) => f,
            (None, Some(a)) => a,
            (None, None) => break,
        };
        while let Some(&Reverse((at, task))) = pool.finishes.peek() {
            if at != now {
                break;
            }
            pool.finishes.pop();
            pool.finish(tasks[task as usize].env as usize);
            last_finish = now;
        }
        while let Some(t) = tasks.get(next).filter(|t| t.arrival_ms == now) {
            pool.queues[t.env as usize].push_back(next as u32);
            next += 1;
        }
        pool.dispatch(trace, now);
    }

    Ok(Outcome {
        starts_ms: pool.starts_ms,
        worker_of: pool.worker_of,
        workers: pool.spans,
        started: pool.started,
        completed: pool.completed,
        end_ms: trace.horizon_ms().max(last_finish),
        peak_workers: pool.peak,
    })
}

struct Pool {
    model: Model,
    /// Queued tasks of each environment, first come first.
    queues: Vec<VecDeque<u32>>,
    /// Slots each environment holds (tasks starting or running).
    running: Vec<u32>,
    alive: u32,
    peak: u32,
    /// (end, task) of every task holding a slot.
    finishes: BinaryHeap<Reverse<(u64, u32)>>,
    spans: Vec<WorkerSpan>,
    starts_ms: Vec<Option<u64>>,
    worker_of: Vec<Option<u32>>,
    started: usize,
    completed: usize,
}

impl Pool {
    fn finish(&mut self, env: usize) {
        self.running[env] -= 1;
        self.alive -= 1;
        self.completed += 1;
    }

    /// How many more tasks environment `e` may start under its cap.
    fn startable(&self, e: usize) -> u32 {
        let room = self.model.max_workers.saturating_sub(self.running[e]);
        room.min(u32::try_from(self.queues[e].len()).unwrap_or(u32::MAX))
    }

    fn dispatch(&mut self, trace: &Trace, now: u64) {
        let free = self
            .model
            .pool_slots
            .map_or(u32::MAX, |p| p.saturating_sub(self.alive));
        if free == 0 {
            return;
        }
        let wanting: Vec<usize> = (0..self.queues.len())
            .filter(|&e| self.startable(e) > 0)
            .collect();
        let want: u64 = wanting.iter().map(|&e| u64::from(self.startable(e))).sum();
        if want <= u64::from(free) {
            for e in wanting {
                for _ in 0..self.startable(e) {
                    self.start(trace, e, now);
                }
            }
            return;
        }
        // Contended: shares over every environment holding or wanting slots.
        let Some(pool) = self.model.pool_slots else {
            return; // unreachable: an unlimited pool is never contended
        };
        let active: Vec<usize> = (0..self.queues.len())
            .filter(|&e| self.running[e] > 0 || !self.queues[e].is_empty())
            .collect();
        let demands: Vec<Demand> = active
            .iter()
            .map(|&e| Demand {
                queued: u32::try_from(self.queues[e].len()).unwrap_or(u32::MAX),
                running: self.running[e],
                concurrency: 1,
                min_workers: self.model.min_workers,
                max_workers: self.model.max_workers,
                weight: 1,
            })
            .collect();
        let mut share = vec![0u32; self.queues.len()];
        for (&e, s) in active.iter().zip(allocate(pool, &demands)) {
            share[e] = s;
        }
        for _ in 0..free {
            let next = wanting
                .iter()
                .copied()
                .filter(|&e| self.startable(e) > 0 && self.running[e] < share[e])
                .max_by_key(|&e| {
                    let head = self.queues[e].front().copied().unwrap_or(u32::MAX);
                    (share[e] - self.running[e], Reverse(head))
                });
            let Some(e) = next else { break };
            self.start(trace, e, now);
        }
    }

    fn start(&mut self, trace: &Trace, e: usize, now: u64) {
        let Some(task) = self.queues[e].pop_front() else {
            return;
        };
        let ready = now + self.model.start_latency_ms;
        let end = ready + trace.tasks()[task as usize].duration_ms;
        let span = u32::try_from(self.spans.len()).unwrap_or(u32::MAX);
        self.spans.push(WorkerSpan {
            env: e as u32,
            requested_ms: now,
            ready_ms: Some(ready),
            drain_ms: None,
            exit_ms: end,
        });
        self.starts_ms[task as usize] = Some(ready);
        self.worker_of[task as usize] = Some(span);
        self.started += 1;
        self.running[e] += 1;
        self.alive += 1;
        self.peak = self.peak.max(self.alive);
        self.finishes.push(Reverse((end, task)));
    }
}
