//! A synthetic multi-tenant Airflow trace, deterministic for a seed: one environment per
//! tenant, each with scheduled DAGs (hourly and daily), occasional bursts (manual triggers,
//! small backfills), short and long tasks. Every number below is a modelling choice, not a
//! measurement; they aim at a platform of many small and a few large teams.
//!
//! - Tenant size: 60 % small (1–4 DAGs), 30 % medium (5–12), 10 % large (13–30).
//! - Schedule: 60 % of DAGs hourly, 40 % daily. Half of the hourly DAGs run at minute 0
//!   (`@hourly`), the others at a minute that is a multiple of 5; daily DAGs run at 00:00–05:55
//!   (60 %, the nightly batch window) or at any hour (40 %), at minute 0 half of the time.
//! - A run starts 0–10 s after its schedule (scheduler loop) and is a chain of 1–4 stages;
//!   a stage has 1 task (60 %), 2–4 (30 %) or 5–15 (10 %, a fan-out). A stage's tasks are
//!   queued 1–5 s after the previous stage's longest task would have ended had nothing waited
//!   (the trace is open-loop: waiting does not shift later stages).
//! - Task durations: short tasks are log-normal with a median of 45 s (σ 0.9, 5 s – 15 min);
//!   long tasks a median of 15 min (σ 0.5, 5 min – 2 h). 10 % of an hourly DAG's tasks are
//!   long, 30 % of a daily DAG's. Each run varies a task's duration by a log-normal factor
//!   (σ 0.25).
//! - Bursts: per tenant, a Poisson process of bursts with a mean of 0.5 per 24 h, each 10–60
//!   short tasks queued over 2 minutes.
//! - Tasks queued at or after the horizon are dropped; durations are cut so that every task
//!   ends by the horizon.
//!
//! Each tenant's DAGs, each DAG's runs and each tenant's bursts draw from their own stream
//! seeded from (seed, tenant, what), so a trace of fewer tenants or hours is a prefix of a
//! larger one with the same seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::trace::{Task, Trace, TraceError};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateParams {
    pub tenants: u32,
    pub hours: u32,
    pub seed: u64,
}

impl Default for GenerateParams {
    /// The default trace: 200 tenants over 24 hours.
    fn default() -> Self {
        Self {
            tenants: 200,
            hours: 24,
            seed: 1,
        }
    }
}

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
/// Mean bursts per tenant per 24 h.
const BURSTS_PER_DAY: f64 = 0.5;

enum Schedule {
    /// Minute past every hour.
    Hourly(u64),
    /// Time of day, from midnight.
    Daily(u64),
}

struct Dag {
    schedule: Schedule,
    /// Base durations of each stage's tasks.
    stages: Vec<Vec<u64>>,
}

/// An independent random stream for (seed, tenant, purpose): 0 draws the tenant's DAGs, 1 its
/// bursts, 2 + k the runs of its DAG k. Keeping them apart makes a trace with fewer tenants or
/// hours a prefix of a larger one.
fn stream(seed: u64, tenant: u32, purpose: u64) -> StdRng {
    // Each part is mixed in after the previous one is fully scrambled, so that no two
    // (seed, tenant, purpose) share a stream (adding them up would: seed 1 tenant 2 = seed 3
    // tenant 0).
    let s = splitmix64(splitmix64(splitmix64(seed) ^ u64::from(tenant)) ^ purpose);
    StdRng::seed_from_u64(s)
}

/// SplitMix64's output function, a bijection of u64 that scrambles every bit.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The environment name of tenant `i` of `tenants`, zero-padded so that names sort in index
/// order (a trace read back from CSV numbers environments by name).
pub fn environment_name(i: u32, tenants: u32) -> String {
    let width = tenants.saturating_sub(1).max(1).ilog10() as usize + 1;
    format!("tenant-{i:0width$}", width = width.max(3))
}

/// Generates the trace described in the module documentation.
pub fn generate(p: &GenerateParams) -> Result<Trace, TraceError> {
    let horizon = u64::from(p.hours) * HOUR;
    let mut tasks = Vec::new();
    for tenant in 0..p.tenants {
        let mut push = |arrival_ms: u64, duration_ms: u64| {
            if arrival_ms < horizon {
                tasks.push(Task {
                    arrival_ms,
                    env: tenant,
                    duration_ms: duration_ms.min(horizon - arrival_ms).max(1),
                });
            }
        };
        let dags = tenant_dags(&mut stream(p.seed, tenant, 0));
        for (k, dag) in dags.iter().enumerate() {
            let mut rng = stream(p.seed, tenant, 2 + k as u64);
            let (first, every) = match dag.schedule {
                Schedule::Hourly(m) => (m, HOUR),
                Schedule::Daily(t) => (t, 24 * HOUR),
            };
            let mut at = first;
            while at < horizon {
                let mut queued = at + rng.gen_range(0..=10 * SECOND);
                for stage in &dag.stages {
                    let mut longest = 0;
                    for &base in stage {
                        let d = ((base as f64) * log_normal(&mut rng, 1.0, 0.25)) as u64;
                        let d = d.max(SECOND);
                        push(queued, d);
                        longest = longest.max(d);
                    }
                    queued += longest + rng.gen_range(SECOND..=5 * SECOND);
                }
                at += every;
            }
        }
        // Bursts as a Poisson process in time: exponential gaps with the mean rate.
        let mut rng = stream(p.seed, tenant, 1);
        let mean_gap_ms = 24.0 * HOUR as f64 / BURSTS_PER_DAY;
        let mut at = 0u64;
        loop {
            let gap = -mean_gap_ms * (1.0 - rng.gen::<f64>()).ln();
            at = at.saturating_add(gap as u64);
            if at >= horizon {
                break;
            }
            for _ in 0..rng.gen_range(10..=60) {
                push(at + rng.gen_range(0..2 * MINUTE), short_task(&mut rng));
            }
        }
    }
    Trace::new(
        (0..p.tenants)
            .map(|i| environment_name(i, p.tenants))
            .collect(),
        tasks,
        horizon,
    )
}

fn tenant_dags(rng: &mut StdRng) -> Vec<Dag> {
    let size = rng.gen::<f64>();
    let dags = if size < 0.6 {
        rng.gen_range(1..=4)
    } else if size < 0.9 {
        rng.gen_range(5..=12)
    } else {
        rng.gen_range(13..=30)
    };
    (0..dags)
        .map(|_| {
            let (schedule, long_share) = if rng.gen_bool(0.6) {
                let minute = if rng.gen_bool(0.5) {
                    0
                } else {
                    5 * rng.gen_range(0..12)
                };
                (Schedule::Hourly(minute * MINUTE), 0.1)
            } else {
                let hour = if rng.gen_bool(0.6) {
                    rng.gen_range(0..6)
                } else {
                    rng.gen_range(0..24)
                };
                let minute = if rng.gen_bool(0.5) {
                    0
                } else {
                    5 * rng.gen_range(0..12)
                };
                (Schedule::Daily(hour * HOUR + minute * MINUTE), 0.3)
            };
            let stages = (0..rng.gen_range(1..=4))
                .map(|_| {
                    let w = rng.gen::<f64>();
                    let width = if w < 0.6 {
                        1
                    } else if w < 0.9 {
                        rng.gen_range(2..=4)
                    } else {
                        rng.gen_range(5..=15)
                    };
                    (0..width)
                        .map(|_| {
                            if rng.gen_bool(long_share) {
                                long_task(rng)
                            } else {
                                short_task(rng)
                            }
                        })
                        .collect()
                })
                .collect();
            Dag { schedule, stages }
        })
        .collect()
}

fn short_task(rng: &mut StdRng) -> u64 {
    let s = log_normal(rng, 45.0, 0.9).clamp(5.0, 900.0);
    (s * 1000.0) as u64
}

fn long_task(rng: &mut StdRng) -> u64 {
    let s = log_normal(rng, 900.0, 0.5).clamp(300.0, 7200.0);
    (s * 1000.0) as u64
}

/// A log-normal draw with the given median and σ of the underlying normal (Box–Muller).
fn log_normal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
    let u2: f64 = rng.gen();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    median * (sigma * z).exp()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    fn small() -> GenerateParams {
        GenerateParams {
            tenants: 20,
            hours: 6,
            seed: 7,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_trace() {
        assert_eq!(generate(&small()), generate(&small()));
    }

    #[test]
    fn another_seed_gives_another_trace() {
        let other = GenerateParams { seed: 8, ..small() };
        assert_ne!(
            generate(&small()).expect("generates").tasks(),
            generate(&other).expect("generates").tasks()
        );
    }

    #[test]
    fn seeds_do_not_share_tenants() {
        // Each tenant's workload, as its (arrival, duration) list, under three seeds: no
        // workload may appear twice (seeds that only renumbered tenants would).
        let mut seen = std::collections::HashSet::new();
        for seed in 1..=3 {
            let t = generate(&GenerateParams { seed, ..small() }).expect("generates");
            for env in 0..20 {
                let w: Vec<(u64, u64)> = t
                    .tasks()
                    .iter()
                    .filter(|x| x.env == env)
                    .map(|x| (x.arrival_ms, x.duration_ms))
                    .collect();
                assert!(
                    seen.insert(w),
                    "seed {seed}, tenant {env} repeats a workload"
                );
            }
        }
    }

    #[test]
    fn names_sort_in_tenant_order() {
        assert_eq!(environment_name(7, 200), "tenant-007");
        assert_eq!(environment_name(7, 1000), "tenant-007");
        assert_eq!(environment_name(7, 1001), "tenant-0007");
        assert_eq!(environment_name(1000, 1001), "tenant-1000");
    }

    #[test]
    fn a_generated_trace_survives_its_csv() {
        // Over 24 h every tenant has tasks (a CSV only knows environments that have some).
        let t = generate(&GenerateParams {
            hours: 24,
            ..small()
        })
        .expect("generates");
        assert_eq!(Trace::from_csv(&t.to_csv()), Ok(t));
    }

    #[test]
    fn tasks_stay_within_the_horizon() {
        let t = generate(&small()).expect("generates");
        assert_eq!(t.horizon_ms(), 6 * HOUR);
        assert!(!t.tasks().is_empty());
        for task in t.tasks() {
            assert!(task.duration_ms >= 1);
            assert!(
                task.arrival_ms + task.duration_ms <= t.horizon_ms(),
                "{task:?}"
            );
        }
    }

    #[test]
    fn fewer_tenants_or_hours_is_a_prefix_of_the_same_workload() {
        let big = generate(&GenerateParams {
            tenants: 30,
            hours: 12,
            ..small()
        })
        .expect("generates");
        let part = generate(&small()).expect("generates");
        let cut = |t: &Trace| -> Vec<(u64, u32, u64)> {
            let mut v: Vec<_> = t
                .tasks()
                .iter()
                .filter(|x| x.env < 20 && x.arrival_ms < 6 * HOUR)
                .map(|x| {
                    (
                        x.arrival_ms,
                        x.env,
                        x.duration_ms.min(6 * HOUR - x.arrival_ms),
                    )
                })
                .collect();
            v.sort_unstable();
            v
        };
        assert!(big.tasks().len() > part.tasks().len());
        assert_eq!(cut(&big), cut(&part));
    }

    #[test]
    fn every_tenant_has_hourly_or_daily_work_and_names_follow_the_index() {
        let t = generate(&GenerateParams {
            tenants: 50,
            hours: 24,
            seed: 1,
        })
        .expect("generates");
        assert_eq!(t.environments()[7], "tenant-007");
        let mut seen = [false; 50];
        for task in t.tasks() {
            seen[task.env as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "every tenant has tasks in 24 h");
    }
}
