//! Environment-hours awake with hibernation, replayed over a trace by the rules the platform
//! applies: an environment hibernates once it has been idle for its window (no task running;
//! the trace has no uses of its Airflow) and no task of it is due within the window from then;
//! asleep, it wakes [`WakeRules::wake_ahead_ms`] before its next task is due, and it only goes
//! to sleep when that leaves at least [`WakeRules::min_sleep_ms`] of sleep. The trace's tasks
//! count as scheduled (known ahead), so every task finds its environment awake.

use serde::Serialize;

use super::Trace;

/// The hibernation rules to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeRules {
    /// `hibernate_after_idle_minutes`, in milliseconds (0: never).
    pub window_ms: u64,
    /// How long before a due task a hibernated environment starts again.
    pub wake_ahead_ms: u64,
    /// The shortest sleep worth stopping for.
    pub min_sleep_ms: u64,
}

impl WakeRules {
    /// The agent's own numbers (60 s ahead, 10 s at least) with an idle window of `minutes`.
    pub fn agent(minutes: u64) -> Self {
        Self {
            window_ms: minutes * 60_000,
            wake_ahead_ms: 60_000,
            min_sleep_ms: 10_000,
        }
    }
}

/// Environment-hours over the trace's period, always on and with hibernation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AwakeHours {
    pub environments: usize,
    pub period_hours: f64,
    /// Every environment awake the whole period.
    pub always_on_env_hours: f64,
    /// Awake with hibernation by [`WakeRules`].
    pub awake_env_hours: f64,
    /// Times an environment went to sleep.
    pub hibernations: u64,
    /// Environments that never slept.
    pub never_asleep: usize,
}

/// Replays every environment of `trace` (awake and idle at the start) under `rules`.
pub fn awake_hours(trace: &Trace, rules: WakeRules) -> AwakeHours {
    let n = trace.environments().len();
    let horizon = trace.horizon_ms();
    // Each environment's busy intervals, by arrival.
    let mut busy: Vec<Vec<(u64, u64)>> = vec![Vec::new(); n];
    for t in trace.tasks() {
        if let Some(b) = busy.get_mut(t.env as usize) {
            b.push((t.arrival_ms, t.arrival_ms + t.duration_ms));
        }
    }
    let (mut asleep_ms, mut hibernations, mut never_asleep) = (0u64, 0u64, 0usize);
    for intervals in &busy {
        let (slept, times) = sleep_of(intervals, horizon, rules);
        asleep_ms += slept;
        hibernations += times;
        if times == 0 {
            never_asleep += 1;
        }
    }
    let hours = |ms: u64| ms as f64 / 3_600_000.0;
    let always = hours(horizon) * n as f64;
    AwakeHours {
        environments: n,
        period_hours: hours(horizon),
        always_on_env_hours: always,
        awake_env_hours: always - hours(asleep_ms),
        hibernations,
        never_asleep,
    }
}

/// Milliseconds one environment sleeps within `[0, horizon)`, and how many times it goes to
/// sleep, given its busy intervals sorted by start.
fn sleep_of(intervals: &[(u64, u64)], horizon: u64, rules: WakeRules) -> (u64, u64) {
    if rules.window_ms == 0 {
        return (0, 0);
    }
    let (mut slept, mut times) = (0u64, 0u64);
    // Idle since `idle_from`; the next task due at `next` (none: the end of the period).
    let mut idle_from = 0u64;
    let mut i = 0;
    loop {
        let next = intervals.get(i).map(|&(start, _)| start);
        let asleep_at = idle_from + rules.window_ms;
        let due = next.unwrap_or(u64::MAX);
        // No task due within the window from the moment the window has passed.
        if asleep_at < horizon && due.saturating_sub(asleep_at) >= rules.window_ms {
            let wake = match next {
                Some(at) => at.saturating_sub(rules.wake_ahead_ms),
                None => horizon,
            }
            .min(horizon);
            if wake >= asleep_at + rules.min_sleep_ms {
                slept += wake - asleep_at;
                times += 1;
            }
        }
        let Some(_) = next else {
            return (slept, times);
        };
        // Busy until every task that overlaps this one ends.
        let mut end = intervals[i].1;
        i += 1;
        while let Some(&(start, stop)) = intervals.get(i) {
            if start > end {
                break;
            }
            end = end.max(stop);
            i += 1;
        }
        idle_from = end;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::simulator::Task;

    const MIN: u64 = 60_000;

    fn trace(tasks: &[(u64, u32, u64)], envs: usize, horizon_min: u64) -> Trace {
        Trace::new(
            (0..envs).map(|i| format!("env-{i}")).collect(),
            tasks
                .iter()
                .map(|&(at, env, dur)| Task {
                    arrival_ms: at * MIN,
                    env,
                    duration_ms: dur * MIN,
                })
                .collect(),
            horizon_min * MIN,
        )
        .unwrap()
    }

    #[test]
    fn an_environment_with_nothing_to_run_sleeps_after_its_window() {
        let t = trace(&[], 2, 24 * 60);
        let h = awake_hours(&t, WakeRules::agent(60));
        assert_eq!(h.always_on_env_hours, 48.0);
        assert_eq!(h.awake_env_hours, 2.0);
        assert_eq!(h.hibernations, 2);
        assert_eq!(awake_hours(&t, WakeRules::agent(0)).awake_env_hours, 48.0);
    }

    #[test]
    fn a_daily_run_wakes_it_a_minute_ahead_and_it_sleeps_an_hour_after() {
        // A 30 min run at 06:00 in a day.
        let t = trace(&[(360, 0, 30)], 1, 24 * 60);
        let h = awake_hours(&t, WakeRules::agent(60));
        // Awake 00:00–01:00, 05:59–07:30.
        assert!(
            (h.awake_env_hours - (1.0 + 91.0 / 60.0)).abs() < 1e-9,
            "{h:?}"
        );
        assert_eq!(h.hibernations, 2);
    }

    #[test]
    fn runs_closer_than_twice_the_window_keep_it_awake() {
        // Every 90 min with a 60 min window: a run is always due within the window.
        let tasks: Vec<_> = (0..16).map(|i| (i * 90, 0, 5)).collect();
        let h = awake_hours(&trace(&tasks, 1, 23 * 60), WakeRules::agent(60));
        assert_eq!(h.hibernations, 0);
        assert_eq!(h.never_asleep, 1);
        assert_eq!(h.awake_env_hours, 23.0);
        // With a 15 min window it sleeps between them.
        let h = awake_hours(&trace(&tasks, 1, 23 * 60), WakeRules::agent(15));
        assert!(h.hibernations >= 15, "{h:?}");
        assert!(h.awake_env_hours < 24.0 * 0.5, "{h:?}");
    }

    #[test]
    fn overlapping_tasks_are_one_busy_stretch() {
        let t = trace(&[(120, 0, 60), (150, 0, 60)], 1, 12 * 60);
        let h = awake_hours(&t, WakeRules::agent(30));
        // Asleep 00:30–01:59, awake until 03:30 + 30 min, asleep 04:00–12:00.
        assert!(
            (h.awake_env_hours - (30.0 + 121.0) / 60.0).abs() < 1e-9,
            "{h:?}"
        );
        assert_eq!(h.hibernations, 2);
    }
}
