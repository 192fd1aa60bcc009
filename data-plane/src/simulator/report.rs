//! The figures of one replay, with their definitions.

use serde::Serialize;

use super::model::Model;
use super::replay::Outcome;
use super::trace::Trace;

/// What one policy cost and how long tasks waited, over the same trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub policy: &'static str,
    pub tasks: usize,
    /// Tasks that ran to their end; the report is refused unless this equals `tasks`.
    pub tasks_completed: usize,
    /// Σ over workers of (exit − start request), in hours, workers still there counted to
    /// the end of the replay. Start latency and draining are paid for.
    pub worker_hours: f64,
    /// busy slot-seconds / provisioned slot-seconds, where busy = Σ task durations and
    /// provisioned = worker-seconds (as in `worker_hours`) × `concurrency` (DESIGN.md's pool
    /// utilization).
    pub utilization: f64,
    pub busy_slot_hours: f64,
    pub provisioned_slot_hours: f64,
    /// Queue wait = task start − task arrival, over all tasks (nearest rank).
    pub wait_p50_s: f64,
    pub wait_p95_s: f64,
    pub wait_p99_s: f64,
    pub wait_max_s: f64,
    pub wait_mean_s: f64,
    /// Jain's index over the environments' mean queue waits, (Σx)² / (n·Σx²): 1 when every
    /// tenant waits the same on average, 1/n when one tenant does all the waiting (1 when
    /// nobody waits).
    pub fairness_jain: f64,
    /// The median and the worst of the environments' own p95 queue waits.
    pub env_p95_wait_median_s: f64,
    pub env_p95_wait_max_s: f64,
    /// Most workers alive at once (starting, ready and draining).
    pub peak_workers: u32,
    pub worker_starts: usize,
    /// The accounted period: the trace's horizon or the last completion if later.
    pub accounted_hours: f64,
    pub model: Model,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("failed to complete the trace under the {policy} policy: {completed} of {tasks} tasks completed, {started} started")]
    LoseTasks {
        policy: &'static str,
        tasks: usize,
        started: usize,
        completed: usize,
    },
}

/// The report of `outcome`, the replay of `trace` under `model`. Refuses an outcome in which
/// a task was lost, started twice, or not completed.
pub fn summarize(trace: &Trace, model: &Model, outcome: &Outcome) -> Result<Report, ReportError> {
    let n = trace.tasks().len();
    let lost = outcome.started != n
        || outcome.completed != n
        || outcome.starts_ms.iter().any(Option::is_none);
    if lost {
        return Err(ReportError::LoseTasks {
            policy: model.policy.name(),
            tasks: n,
            started: outcome.started,
            completed: outcome.completed,
        });
    }
    let waits: Vec<u64> = trace
        .tasks()
        .iter()
        .zip(&outcome.starts_ms)
        .map(|(t, s)| s.unwrap_or(t.arrival_ms) - t.arrival_ms)
        .collect();
    let mut per_env: Vec<Vec<u64>> = vec![Vec::new(); trace.environments().len()];
    for (t, w) in trace.tasks().iter().zip(&waits) {
        per_env[t.env as usize].push(*w);
    }
    let env_means: Vec<f64> = per_env
        .iter()
        .filter(|w| !w.is_empty())
        .map(|w| w.iter().sum::<u64>() as f64 / w.len() as f64 / 1000.0)
        .collect();
    let mut env_p95: Vec<u64> = per_env
        .iter_mut()
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.sort_unstable();
            quantile(w, 0.95)
        })
        .collect();
    env_p95.sort_unstable();
    let mut sorted = waits.clone();
    sorted.sort_unstable();

    let worker_ms: u64 = outcome
        .workers
        .iter()
        .map(|w| w.exit_ms - w.requested_ms)
        .sum();
    let provisioned_slot_ms = worker_ms as f64 * f64::from(model.concurrency);
    let busy_slot_ms = trace.busy_slot_ms() as f64;
    let hours = |ms: f64| ms / 3_600_000.0;
    let secs = |ms: u64| round(ms as f64 / 1000.0, 2);
    Ok(Report {
        policy: model.policy.name(),
        tasks: n,
        tasks_completed: outcome.completed,
        worker_hours: round(hours(worker_ms as f64), 2),
        utilization: round(busy_slot_ms / provisioned_slot_ms.max(1.0), 4),
        busy_slot_hours: round(hours(busy_slot_ms), 2),
        provisioned_slot_hours: round(hours(provisioned_slot_ms), 2),
        wait_p50_s: secs(quantile(&sorted, 0.50)),
        wait_p95_s: secs(quantile(&sorted, 0.95)),
        wait_p99_s: secs(quantile(&sorted, 0.99)),
        wait_max_s: secs(sorted.last().copied().unwrap_or(0)),
        wait_mean_s: round(
            waits.iter().sum::<u64>() as f64 / n.max(1) as f64 / 1000.0,
            2,
        ),
        fairness_jain: round(jain(&env_means), 4),
        env_p95_wait_median_s: secs(quantile(&env_p95, 0.50)),
        env_p95_wait_max_s: secs(env_p95.last().copied().unwrap_or(0)),
        peak_workers: outcome.peak_workers,
        worker_starts: outcome.workers.len(),
        accounted_hours: round(hours(outcome.end_ms as f64), 3),
        model: *model,
    })
}

/// Nearest-rank quantile of sorted values (0 for none).
pub(crate) fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Jain's fairness index of `x`; 1 for no values or all zeros.
pub(crate) fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let squares: f64 = x.iter().map(|v| v * v).sum();
    if squares == 0.0 {
        return 1.0;
    }
    sum * sum / (x.len() as f64 * squares)
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::median_of_four(vec![1, 2, 3, 4], 0.5, 2)]
    #[case::p95_of_twenty(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20], 0.95, 19)]
    #[case::max(vec![1, 9], 1.0, 9)]
    #[case::min(vec![3, 9], 0.0, 3)]
    #[case::none(vec![], 0.5, 0)]
    fn nearest_rank(#[case] v: Vec<u64>, #[case] q: f64, #[case] want: u64) {
        assert_eq!(quantile(&v, q), want);
    }

    #[rstest]
    #[case::equal(vec![4.0, 4.0, 4.0, 4.0], 1.0)]
    #[case::one_waits(vec![10.0, 0.0, 0.0, 0.0], 0.25)]
    #[case::nobody_waits(vec![0.0, 0.0], 1.0)]
    #[case::half(vec![1.0, 1.0, 0.0, 0.0], 0.5)]
    fn jains_index(#[case] x: Vec<f64>, #[case] want: f64) {
        assert!((jain(&x) - want).abs() < 1e-12, "{}", jain(&x));
    }
}
