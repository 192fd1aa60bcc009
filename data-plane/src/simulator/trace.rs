//! A multi-tenant task trace: when each task instance was queued, in which environment, and
//! how long it runs once a worker slot takes it; read from and written to CSV.
//!
//! The CSV has the header `arrival_s,environment,duration_s` and one task per line; times are
//! seconds from the start of the trace with up to millisecond precision. Blank lines and lines
//! starting with `#` are skipped. Environment names are free text without commas or quotes
//! (they only label tasks here; nothing is created from them); a trace read from CSV numbers
//! its environments in name order, and knows only those with at least one task (an idle
//! environment would still cost the dedicated policy its always-on worker).

use std::fmt::Write as _;

/// The CSV header, exactly.
pub const CSV_HEADER: &str = "arrival_s,environment,duration_s";

/// Largest time a trace may hold (about 31 years), so that milliseconds never overflow.
const MAX_SECONDS: f64 = 1.0e9;

/// One task instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    /// Milliseconds from the start of the trace to the moment the task is queued.
    pub arrival_ms: u64,
    /// Index into [`Trace::environments`].
    pub env: u32,
    /// Milliseconds the task runs once it has a worker slot (at least 1).
    pub duration_ms: u64,
}

/// Tasks sorted by arrival (ties keep their order), with the environments they name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    environments: Vec<String>,
    tasks: Vec<Task>,
    horizon_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceError {
    #[error("failed to read the header on line {line}: expected `{CSV_HEADER}`, found `{found}`")]
    ReadHeader { line: usize, found: String },
    #[error("failed to read line {line}: expected 3 fields ({CSV_HEADER}), found {found}")]
    ReadFields { line: usize, found: usize },
    #[error("failed to read line {line}, field {field}: {reason}")]
    ReadField {
        line: usize,
        field: &'static str,
        reason: String,
    },
    #[error("failed to read the trace: it holds no task")]
    ReadEmpty,
    #[error("failed to build the trace: task {task} names environment {env}, but there are {environments}")]
    BuildEnvironment {
        task: usize,
        env: u32,
        environments: usize,
    },
    #[error("failed to build the trace: task {task} has a zero duration")]
    BuildDuration { task: usize },
}

impl Trace {
    /// A trace from tasks in any order. `horizon_ms` is the length of the period the trace
    /// describes (the simulation accounts for at least that long); it is raised to the last
    /// arrival if shorter.
    pub fn new(
        environments: Vec<String>,
        mut tasks: Vec<Task>,
        horizon_ms: u64,
    ) -> Result<Self, TraceError> {
        for (i, t) in tasks.iter().enumerate() {
            if t.env as usize >= environments.len() {
                return Err(TraceError::BuildEnvironment {
                    task: i,
                    env: t.env,
                    environments: environments.len(),
                });
            }
            if t.duration_ms == 0 {
                return Err(TraceError::BuildDuration { task: i });
            }
        }
        tasks.sort_by_key(|t| t.arrival_ms);
        let last = tasks.last().map_or(0, |t| t.arrival_ms);
        Ok(Self {
            environments,
            tasks,
            horizon_ms: horizon_ms.max(last),
        })
    }

    pub fn environments(&self) -> &[String] {
        &self.environments
    }

    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    pub fn horizon_ms(&self) -> u64 {
        self.horizon_ms
    }

    /// Sum of all task durations: the busy slot-milliseconds any policy must provide.
    pub fn busy_slot_ms(&self) -> u64 {
        self.tasks.iter().map(|t| t.duration_ms).sum()
    }

    /// Parses the CSV form. The horizon of a read trace is its last arrival rounded up to a
    /// whole hour (a CSV does not carry it).
    pub fn from_csv(text: &str) -> Result<Self, TraceError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let Some((line, header)) = lines.next() else {
            return Err(TraceError::ReadEmpty);
        };
        if header.trim_start_matches('\u{feff}') != CSV_HEADER {
            return Err(TraceError::ReadHeader {
                line,
                found: header.to_owned(),
            });
        }
        let mut environments: Vec<String> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let mut tasks = Vec::new();
        for (line, text) in lines {
            let fields: Vec<&str> = text.split(',').map(str::trim).collect();
            let [arrival, env, duration] = fields[..] else {
                return Err(TraceError::ReadFields {
                    line,
                    found: fields.len(),
                });
            };
            let arrival_ms = seconds_to_ms(arrival).map_err(|reason| TraceError::ReadField {
                line,
                field: "arrival_s",
                reason,
            })?;
            let duration_ms = seconds_to_ms(duration).map_err(|reason| TraceError::ReadField {
                line,
                field: "duration_s",
                reason,
            })?;
            if duration_ms == 0 {
                return Err(TraceError::ReadField {
                    line,
                    field: "duration_s",
                    reason: format!("must be at least 0.001 s, found `{duration}`"),
                });
            }
            if env.is_empty() || env.contains('"') {
                return Err(TraceError::ReadField {
                    line,
                    field: "environment",
                    reason: format!("must be a non-empty name without quotes, found `{env}`"),
                });
            }
            let id = *index.entry(env.to_owned()).or_insert_with(|| {
                environments.push(env.to_owned());
                environments.len() - 1
            });
            tasks.push(Task {
                arrival_ms,
                env: u32::try_from(id).unwrap_or(u32::MAX),
                duration_ms,
            });
        }
        if tasks.is_empty() {
            return Err(TraceError::ReadEmpty);
        }
        // Environments in name order, whatever order they first appear in: the order decides
        // ties in the pool's fair share, so the same tasks must always give the same trace.
        let mut by_name: Vec<usize> = (0..environments.len()).collect();
        by_name.sort_by(|&a, &b| environments[a].cmp(&environments[b]));
        let mut renumber = vec![0u32; environments.len()];
        for (new, &old) in by_name.iter().enumerate() {
            renumber[old] = u32::try_from(new).unwrap_or(u32::MAX);
        }
        for t in &mut tasks {
            t.env = renumber[t.env as usize];
        }
        let environments: Vec<String> = by_name
            .into_iter()
            .map(|i| std::mem::take(&mut environments[i]))
            .collect();
        let last = tasks.iter().map(|t| t.arrival_ms).max().unwrap_or(0);
        let horizon_ms = last.div_ceil(3_600_000).max(1) * 3_600_000;
        Self::new(environments, tasks, horizon_ms)
    }

    /// The CSV form, tasks in arrival order, times with millisecond precision.
    pub fn to_csv(&self) -> String {
        let mut out = String::with_capacity(32 * (self.tasks.len() + 1));
        out.push_str(CSV_HEADER);
        out.push('\n');
        for t in &self.tasks {
            let _ = writeln!(
                out,
                "{},{},{}",
                ms_to_seconds(t.arrival_ms),
                self.environments[t.env as usize],
                ms_to_seconds(t.duration_ms)
            );
        }
        out
    }
}

fn seconds_to_ms(field: &str) -> Result<u64, String> {
    let s: f64 = field
        .parse()
        .map_err(|_| format!("must be a number of seconds, found `{field}`"))?;
    if !s.is_finite() {
        return Err(format!("must be a finite number, found `{field}`"));
    }
    if s < 0.0 {
        return Err(format!("must not be negative, found `{field}`"));
    }
    if s > MAX_SECONDS {
        return Err(format!("must be at most {MAX_SECONDS} s, found `{field}`"));
    }
    // In range and non-negative, so the cast is exact up to rounding to the millisecond.
    Ok((s * 1000.0).round() as u64)
}

fn ms_to_seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use rstest::rstest;

    fn sample() -> Trace {
        Trace::new(
            vec!["a".into(), "b".into()],
            vec![
                Task {
                    arrival_ms: 1_500,
                    env: 1,
                    duration_ms: 60_000,
                },
                Task {
                    arrival_ms: 0,
                    env: 0,
                    duration_ms: 1,
                },
                Task {
                    arrival_ms: 3_600_001,
                    env: 0,
                    duration_ms: 12_345,
                },
            ],
            0,
        )
        .expect("valid trace")
    }

    #[test]
    fn tasks_are_sorted_by_arrival() {
        let t = sample();
        let arrivals: Vec<u64> = t.tasks().iter().map(|t| t.arrival_ms).collect();
        assert_eq!(arrivals, vec![0, 1_500, 3_600_001]);
    }

    #[test]
    fn csv_round_trip_keeps_every_task_to_the_millisecond() {
        let t = sample();
        let csv = t.to_csv();
        assert!(csv.starts_with("arrival_s,environment,duration_s\n0.000,a,0.001\n"));
        let back = Trace::from_csv(&csv).expect("parses");
        assert_eq!(back.tasks(), t.tasks());
        assert_eq!(back.environments(), t.environments());
        assert_eq!(
            back.horizon_ms(),
            2 * 3_600_000,
            "last arrival rounded up to the hour"
        );
    }

    #[test]
    fn environments_are_numbered_in_name_order() {
        let t = Trace::from_csv("arrival_s,environment,duration_s\n0,b,1\n1,a,1\n2,b,1\n")
            .expect("parses");
        assert_eq!(t.environments(), ["a", "b"]);
        let envs: Vec<u32> = t.tasks().iter().map(|t| t.env).collect();
        assert_eq!(envs, vec![1, 0, 1]);
    }

    #[test]
    fn csv_skips_comments_and_blank_lines_and_trims() {
        let t =
            Trace::from_csv("# made by hand\n\narrival_s,environment,duration_s\n 2 , x , 3.5 \n")
                .expect("parses");
        assert_eq!(
            t.tasks(),
            &[Task {
                arrival_ms: 2_000,
                env: 0,
                duration_ms: 3_500
            }]
        );
    }

    #[rstest]
    #[case::wrong_header(
        "a,b,c\n1,x,1\n",
        "line 1: expected `arrival_s,environment,duration_s`, found `a,b,c`"
    )]
    #[case::missing_field("arrival_s,environment,duration_s\n1,x\n", "line 2: expected 3 fields")]
    #[case::extra_field("arrival_s,environment,duration_s\n1,x,1,2\n", "found 4")]
    #[case::negative_duration(
        "arrival_s,environment,duration_s\n1,x,1\n2,x,-5\n",
        "line 3, field duration_s: must not be negative, found `-5`"
    )]
    #[case::zero_duration(
        "arrival_s,environment,duration_s\n1,x,0\n",
        "line 2, field duration_s: must be at least 0.001 s"
    )]
    #[case::not_a_number(
        "arrival_s,environment,duration_s\nsoon,x,1\n",
        "line 2, field arrival_s: must be a number of seconds, found `soon`"
    )]
    #[case::infinite(
        "arrival_s,environment,duration_s\ninf,x,1\n",
        "field arrival_s: must be a finite number"
    )]
    #[case::negative_arrival(
        "arrival_s,environment,duration_s\n-1,x,1\n",
        "field arrival_s: must not be negative"
    )]
    #[case::empty_env(
        "arrival_s,environment,duration_s\n1,,1\n",
        "field environment: must be a non-empty name"
    )]
    #[case::quoted_env("arrival_s,environment,duration_s\n1,\"x\",1\n", "field environment")]
    #[case::no_tasks("arrival_s,environment,duration_s\n", "holds no task")]
    #[case::nothing_at_all("", "holds no task")]
    fn bad_csv_names_the_line_and_field(#[case] csv: &str, #[case] want: &str) {
        let e = Trace::from_csv(csv).expect_err("must be refused");
        assert!(e.to_string().contains(want), "{e}");
    }

    #[test]
    fn new_refuses_an_unknown_environment_and_a_zero_duration() {
        let task = |env, duration_ms| Task {
            arrival_ms: 0,
            env,
            duration_ms,
        };
        assert_eq!(
            Trace::new(vec!["a".into()], vec![task(1, 5)], 0),
            Err(TraceError::BuildEnvironment {
                task: 0,
                env: 1,
                environments: 1
            })
        );
        assert_eq!(
            Trace::new(vec!["a".into()], vec![task(0, 0)], 0),
            Err(TraceError::BuildDuration { task: 0 })
        );
    }
}
