//! Replays a [`Trace`] through one [`Model`], event by event in simulated milliseconds, with
//! the autoscaler's own decision functions. Pure: no clock is read for decisions (the
//! [`Cooldown`]'s `Instant`s are a fixed epoch plus simulated time), no I/O.
//!
//! What happens, in order at equal times: tasks finish, started workers become ready, tasks
//! arrive, then the autoscaler evaluates (so a task arriving on an evaluation sees it).
//! - A queued task goes at once to a ready, non-draining worker of its environment with a free
//!   slot, the busiest such worker first (ties to the oldest), so that lightly used workers
//!   empty out and can be drained; tasks of an environment are taken first come, first served.
//! - Every `evaluate_every_ms` the autoscaler computes each environment's demand
//!   ([`Demand`]: queued, running — by default including tasks on draining workers, as
//!   Airflow counts them — concurrency, bounds, weight 1), its target
//!   ([`wanted_workers`]), its share (with a shared pool, [`allocate`] over the pool; without,
//!   what it wants), and takes the step [`decide`] gives from the workers that are not
//!   draining (starting ones included), as the agent does: up at once but only into free pool
//!   slots (draining workers hold theirs), down after the [`Cooldown`], or at once when the pool
//!   cut the share.
//! - `Up(n)` starts `n` workers, ready `start_latency_ms` later. Environments take their steps
//!   one after another, each into the slots the ones before left free; the first turn rotates.
//! - `Down(n)` drains `n` workers: still-starting ones first (they hold no task), then the
//!   least busy. A draining worker takes no new task and exits when its last task ends; no
//!   task is ever killed.
//! - Workers of `min_workers` exist and are ready from time 0 (the environment was running
//!   before the trace starts).
//!
//! The replay runs until every task is done and the horizon is reached; workers still there
//! are accounted until then.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use crate::autoscaler::{allocate, decide, wanted_workers, Cooldown, Demand, Step};

use super::model::{Model, Policy};
use super::trace::Trace;

/// What became of every task and worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// When each task (same index as [`Trace::tasks`]) started; `None` if it never did.
    pub starts_ms: Vec<Option<u64>>,
    /// The worker (index into `workers`) each task ran on.
    pub worker_of: Vec<Option<u32>>,
    pub workers: Vec<WorkerSpan>,
    /// Task starts and completions counted as they happened (each task must count once).
    pub started: usize,
    pub completed: usize,
    /// The end of the accounted period: the horizon, or the last completion if later.
    pub end_ms: u64,
    /// Most workers alive at once (starting, ready and draining).
    pub peak_workers: u32,
}

/// One worker's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSpan {
    pub env: u32,
    /// When it was asked for (it is paid for from then).
    pub requested_ms: u64,
    /// When it took tasks; `None` if drained before it was ready.
    pub ready_ms: Option<u64>,
    /// When it was told to drain, if it was.
    pub drain_ms: Option<u64>,
    /// When it exited, or [`Outcome::end_ms`] if it was still there.
    pub exit_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayError {
    #[error("failed to replay the {policy} policy: {field} must be at least 1")]
    CheckModel {
        policy: &'static str,
        field: &'static str,
    },
}

/// Simulated time after the horizon at which a replay gives up (tasks left are then lost,
/// which the report refuses). Only a broken model gets there.
const GIVE_UP_AFTER_MS: u64 = 30 * 24 * 3_600_000;

const FINISH: u8 = 0;
const READY: u8 = 1;
const ARRIVE: u8 = 2;
const EVALUATE: u8 = 3;

struct Env {
    queue: VecDeque<u32>,
    running: u32,
    /// Alive workers, oldest first.
    workers: Vec<u32>,
    cooldown: Cooldown,
}

struct Worker {
    env: u32,
    requested_ms: u64,
    ready_ms: Option<u64>,
    drain_ms: Option<u64>,
    exit_ms: Option<u64>,
    running: u32,
}

struct Sim<'a> {
    trace: &'a Trace,
    model: Model,
    epoch: Instant,
    envs: Vec<Env>,
    workers: Vec<Worker>,
    events: BinaryHeap<Reverse<(u64, u8, u32)>>,
    starts_ms: Vec<Option<u64>>,
    worker_of: Vec<Option<u32>>,
    started: usize,
    completed: usize,
    alive: u32,
    draining: u32,
    peak: u32,
}

/// Replays `trace` under `model` (the task pool's own replay for [`Policy::HangarTasks`]).
pub fn replay(trace: &Trace, model: &Model) -> Result<Outcome, ReplayError> {
    if model.policy == Policy::HangarTasks {
        return super::task_pool::replay_tasks(trace, model);
    }
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
    check(model.concurrency >= 1, "concurrency")?;
    check(model.max_workers >= 1, "max_workers")?;
    check(model.evaluate_every_ms >= 1, "evaluate_every_ms")?;
    check(model.pool_slots != Some(0), "pool_slots")?;

    let n = trace.tasks().len();
    let cooldown = Cooldown::new(Duration::from_millis(model.cooldown_ms));
    let mut sim = Sim {
        trace,
        model: *model,
        epoch: Instant::now(),
        envs: (0..trace.environments().len())
            .map(|_| Env {
                queue: VecDeque::new(),
                running: 0,
                workers: Vec::new(),
                cooldown: cooldown.clone(),
            })
            .collect(),
        workers: Vec::new(),
        events: BinaryHeap::new(),
        starts_ms: vec![None; n],
        worker_of: vec![None; n],
        started: 0,
        completed: 0,
        alive: 0,
        draining: 0,
        peak: 0,
    };
    for e in 0..sim.envs.len() {
        for _ in 0..model.min_workers {
            let w = sim.start_worker(e, 0);
            sim.workers[w as usize].ready_ms = Some(0);
        }
    }
    sim.events.clear();
    sim.events.push(Reverse((0, EVALUATE, 0)));

    let tasks = trace.tasks();
    let horizon = trace.horizon_ms();
    let mut next_arrival = 0usize;
    let mut last_finish = 0;
    loop {
        let queued = sim.events.peek().map(|Reverse(e)| *e);
        let arrival = tasks
            .get(next_arrival)
            .map(|t| (t.arrival_ms, ARRIVE, next_arrival as u32));
        let (now, kind, id) = match (queued, arrival) {
            (Some(q), Some(a)) if a < q => a,
            (Some(q), _) => q,
            (None, Some(a)) => a,
            (None, None) => break,
        };
        if (sim.completed == n && now > horizon) || now > horizon + GIVE_UP_AFTER_MS {
            break;
        }
        if kind == ARRIVE {
            next_arrival += 1;
        } else {
            sim.events.pop();
        }
        match kind {
            FINISH => {
                last_finish = now;
                sim.finish(id, now);
            }
            READY => sim.ready(id, now),
            ARRIVE => {
                let e = tasks[id as usize].env as usize;
                sim.envs[e].queue.push_back(id);
                sim.dispatch(e, now);
            }
            _ => {
                sim.evaluate(now);
                sim.events
                    .push(Reverse((now + model.evaluate_every_ms, EVALUATE, 0)));
            }
        }
    }

    let end_ms = horizon.max(last_finish);
    let workers = sim
        .workers
        .iter()
        .map(|w| WorkerSpan {
            env: w.env,
            requested_ms: w.requested_ms,
            ready_ms: w.ready_ms,
            drain_ms: w.drain_ms,
            exit_ms: w.exit_ms.unwrap_or(end_ms),
        })
        .collect();
    Ok(Outcome {
        starts_ms: sim.starts_ms,
        worker_of: sim.worker_of,
        workers,
        started: sim.started,
        completed: sim.completed,
        end_ms,
        peak_workers: sim.peak,
    })
}

impl Sim<'_> {
    fn start_worker(&mut self, e: usize, now: u64) -> u32 {
        let id = self.workers.len() as u32;
        self.workers.push(Worker {
            env: e as u32,
            requested_ms: now,
            ready_ms: None,
            drain_ms: None,
            exit_ms: None,
            running: 0,
        });
        self.envs[e].workers.push(id);
        self.alive += 1;
        self.peak = self.peak.max(self.alive);
        self.events
            .push(Reverse((now + self.model.start_latency_ms, READY, id)));
        id
    }

    fn exit(&mut self, w: u32, now: u64) {
        let worker = &mut self.workers[w as usize];
        worker.exit_ms = Some(now);
        if worker.drain_ms.is_some() {
            self.draining -= 1;
        }
        self.alive -= 1;
        let env = &mut self.envs[worker.env as usize];
        env.workers.retain(|&x| x != w);
    }

    fn ready(&mut self, w: u32, now: u64) {
        let worker = &mut self.workers[w as usize];
        if worker.exit_ms.is_some() {
            return; // drained while starting
        }
        worker.ready_ms = Some(now);
        let e = worker.env as usize;
        self.dispatch(e, now);
    }

    fn finish(&mut self, task: u32, now: u64) {
        let Some(w) = self.worker_of[task as usize] else {
            return;
        };
        self.completed += 1;
        let worker = &mut self.workers[w as usize];
        worker.running -= 1;
        let e = worker.env as usize;
        self.envs[e].running -= 1;
        if worker.drain_ms.is_some() && worker.running == 0 {
            self.exit(w, now);
        }
        self.dispatch(e, now);
    }

    /// Gives queued tasks of environment `e` to free slots of its ready, non-draining workers.
    fn dispatch(&mut self, e: usize, now: u64) {
        let concurrency = self.model.concurrency;
        while let Some(&task) = self.envs[e].queue.front() {
            let workers = &self.workers;
            let best = self.envs[e]
                .workers
                .iter()
                .copied()
                .filter(|&w| {
                    let x = &workers[w as usize];
                    x.ready_ms.is_some() && x.drain_ms.is_none() && x.running < concurrency
                })
                .max_by_key(|&w| (workers[w as usize].running, Reverse(w)));
            let Some(w) = best else { break };
            self.envs[e].queue.pop_front();
            self.envs[e].running += 1;
            self.workers[w as usize].running += 1;
            self.starts_ms[task as usize] = Some(now);
            self.worker_of[task as usize] = Some(w);
            self.started += 1;
            let duration = self.trace.tasks()[task as usize].duration_ms;
            self.events.push(Reverse((now + duration, FINISH, task)));
        }
    }

    fn evaluate(&mut self, now: u64) {
        let m = self.model;
        let workers = &self.workers;
        let demands: Vec<Demand> = self
            .envs
            .iter()
            .map(|env| Demand {
                queued: env.queue.len() as u32,
                running: if m.demand_counts_draining {
                    env.running
                } else {
                    env.workers
                        .iter()
                        .map(|&w| &workers[w as usize])
                        .filter(|w| w.drain_ms.is_none())
                        .map(|w| w.running)
                        .sum()
                },
                concurrency: m.concurrency,
                min_workers: m.min_workers,
                max_workers: m.max_workers,
                weight: 1,
            })
            .collect();
        let wanted: Vec<u32> = demands.iter().map(wanted_workers).collect();
        let shares: Vec<u32> = match m.pool_slots {
            None => wanted.clone(),
            Some(pool) => {
                // Only environments that want workers take part; `allocate` would give the
                // others nothing anyway, and leaving them out keeps each evaluation cheap.
                let active: Vec<usize> = (0..demands.len()).filter(|&i| wanted[i] > 0).collect();
                let wanting: Vec<Demand> = active.iter().map(|&i| demands[i]).collect();
                let given = allocate(pool, &wanting);
                let mut shares = vec![0; demands.len()];
                for (&i, g) in active.iter().zip(given) {
                    shares[i] = g;
                }
                shares
            }
        };

        // As the agent: each environment in turn takes its step with `decide`, new workers
        // only into slots free at that moment (draining workers still hold theirs). The agent's
        // environments take their turns in no set order, so the first turn rotates.
        let at = self.epoch + Duration::from_millis(now);
        let mut free = m
            .pool_slots
            .map_or(u32::MAX, |pool| pool.saturating_sub(self.alive));
        let n = self.envs.len();
        let first = usize::try_from(now / m.evaluate_every_ms.max(1)).unwrap_or(0) % n.max(1);
        for e in (0..n).map(|k| (first + k) % n) {
            let workers = &self.workers;
            let current = self.envs[e]
                .workers
                .iter()
                .filter(|&&w| workers[w as usize].drain_ms.is_none())
                .count() as u32;
            match decide(
                &mut self.envs[e].cooldown,
                at,
                current,
                wanted[e],
                shares[e],
                free,
            ) {
                Step::Up(k) => {
                    for _ in 0..k {
                        self.start_worker(e, now);
                    }
                    free = free.saturating_sub(k);
                }
                Step::Down(k) => self.drain(e, k, now),
                Step::Hold => {}
            }
        }
    }

    /// Drains `k` of environment `e`'s non-draining workers: still-starting ones first (newest
    /// first), then the least busy (newest first among equals).
    fn drain(&mut self, e: usize, k: u32, now: u64) {
        let workers = &self.workers;
        let mut candidates: Vec<u32> = self.envs[e]
            .workers
            .iter()
            .copied()
            .filter(|&w| workers[w as usize].drain_ms.is_none())
            .collect();
        candidates.sort_by_key(|&w| {
            let x = &workers[w as usize];
            (x.ready_ms.is_some(), x.running, Reverse(w))
        });
        for w in candidates.into_iter().take(k as usize) {
            let worker = &mut self.workers[w as usize];
            worker.drain_ms = Some(now);
            self.draining += 1;
            if worker.running == 0 {
                self.exit(w, now);
            }
        }
    }
}
