//! `hangar simulate`: generate a multi-tenant task trace, and replay one through Hangar's
//! shared pool of workers, MWAA-like dedicated workers, KEDA per-environment autoscaling and
//! the Hangar executor's pool of task slots (`hangar_data_plane::simulator`). Offline: it
//! talks to no server.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::str::FromStr;

use hangar_data_plane::simulator::{
    self, GenerateParams, Model, Policy, Report, SimulateError, Trace, TraceError,
};

#[derive(Debug, clap::Subcommand)]
pub enum SimulateCmd {
    /// Print a generated trace as CSV (`arrival_s,environment,duration_s`) on stdout.
    Generate(TraceArgs),
    /// Replay a trace under each policy and print one JSON object per policy on stdout.
    Run(RunArgs),
}

/// The generated trace (see `hangar_data_plane::simulator::generate`).
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// Tenants, one environment each.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub tenants: u32,
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=8760))]
    pub hours: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl TraceArgs {
    fn params(&self) -> GenerateParams {
        GenerateParams {
            tenants: self.tenants,
            hours: self.hours,
            seed: self.seed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyArg {
    All,
    Hangar,
    Dedicated,
    Keda,
    HangarTasks,
}

/// Worker slots of Hangar's shared pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolSize {
    /// The trace's zero-wait peak: the most workers needed at once if every task started on
    /// arrival with no start latency and no cooldown (`simulator::trace_stats`).
    Auto,
    Unlimited,
    Slots(u32),
}

impl FromStr for PoolSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "unlimited" => Ok(Self::Unlimited),
            n => match n.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Self::Slots(n)),
                _ => Err(format!(
                    "expected `auto`, `unlimited` or a number of worker slots ≥ 1, found `{n}`"
                )),
            },
        }
    }
}

impl PoolSize {
    /// The pool of this size for `trace` with workers of `concurrency` slots.
    pub fn slots(self, trace: &Trace, concurrency: u32) -> Option<u32> {
        match self {
            Self::Auto => Some(
                simulator::trace_stats(trace, concurrency)
                    .zero_wait_peak_workers
                    .max(1),
            ),
            Self::Unlimited => None,
            Self::Slots(n) => Some(n),
        }
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match seconds(s) {
        Ok(x) if x > 0.0 => Ok(x),
        _ => Err(format!(
            "expected a number of seconds above 0, up to 10,000,000, found `{s}`"
        )),
    }
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && (0.0..=1.0e7).contains(&x) => Ok(x),
        _ => Err(format!(
            "expected a number of seconds from 0 to 10,000,000, found `{s}`"
        )),
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The trace as CSV (`arrival_s,environment,duration_s`; `-` reads stdin). Without it,
    /// the trace generated from --tenants, --hours and --seed.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    #[command(flatten)]
    pub generate: TraceArgs,
    #[arg(long, value_enum, default_value = "all")]
    pub policy: PolicyArg,
    /// Worker slots of Hangar's shared pool (one worker each): a number, `auto` (the trace's
    /// zero-wait peak) or `unlimited`. The hangar-tasks policy gets the same capacity in task
    /// slots (a number times --concurrency; `auto`: the trace's zero-wait peak of tasks).
    #[arg(long, default_value = "auto")]
    pub pool_slots: PoolSize,
    /// Hangar: seconds a lower target must hold before workers drain.
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    pub cooldown_s: f64,
    /// Hangar: seconds from starting a worker to it taking tasks.
    #[arg(long, default_value_t = 8.0, value_parser = seconds)]
    pub start_latency_s: f64,
    /// Hangar: seconds between autoscaler evaluations (the agent's tick).
    #[arg(long, default_value_t = 2.0, value_parser = positive_seconds)]
    pub tick_s: f64,
    /// hangar-tasks: seconds every task spends starting (a new Python process importing
    /// Airflow) before its code runs.
    #[arg(long, default_value_t = simulator::model::DEFAULT_TASK_START_MS as f64 / 1000.0, value_parser = seconds)]
    pub task_start_s: f64,
    /// Task slots per worker, for every worker policy (hangar-tasks runs one task per slot).
    #[arg(long, default_value_t = simulator::model::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Most workers per environment, for every policy.
    #[arg(long, default_value_t = simulator::model::DEFAULT_MAX_WORKERS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_workers: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateCmdError {
    #[error("failed to read trace {path}")]
    ReadTrace {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to read trace {path}")]
    ParseTrace { path: String, source: TraceError },
    #[error(transparent)]
    Generate(TraceError),
    #[error(transparent)]
    Simulate(#[from] SimulateError),
    #[error("failed to write to stdout")]
    Write(#[from] std::io::Error),
}

pub fn run(cmd: SimulateCmd) -> Result<(), SimulateCmdError> {
    match print(cmd) {
        // The reader went away (`hangar simulate generate | head`): nothing more to do.
        Err(SimulateCmdError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

fn print(cmd: SimulateCmd) -> Result<(), SimulateCmdError> {
    match cmd {
        SimulateCmd::Generate(args) => {
            let trace = simulator::generate(&args.params()).map_err(SimulateCmdError::Generate)?;
            let mut out = std::io::stdout().lock();
            out.write_all(trace.to_csv().as_bytes())?;
            out.flush()?;
        }
        SimulateCmd::Run(args) => {
            let trace = load(&args)?;
            let stats = simulator::trace_stats(&trace, args.concurrency);
            eprintln!(
                "trace: {} tasks in {} environments over {} h, {} busy slot-hours, zero-wait peak {} workers, packing bound {:.1} %",
                stats.tasks,
                stats.environments,
                stats.horizon_hours,
                stats.busy_slot_hours,
                stats.zero_wait_peak_workers,
                stats.packing_bound_utilization * 100.0
            );
            let mut out = std::io::stdout().lock();
            for line in simulate(&trace, &args)? {
                writeln!(out, "{line}")?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

fn load(args: &RunArgs) -> Result<Trace, SimulateCmdError> {
    let Some(path) = &args.trace else {
        return simulator::generate(&args.generate.params()).map_err(SimulateCmdError::Generate);
    };
    let name = path.display().to_string();
    let mut text = String::new();
    let read = if name == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|source| SimulateCmdError::ReadTrace {
        path: name.clone(),
        source,
    })?;
    Trace::from_csv(&text).map_err(|source| SimulateCmdError::ParseTrace { path: name, source })
}

/// The models `args` selects, Hangar's with its flags applied.
pub fn models(trace: &Trace, args: &RunArgs) -> Vec<Model> {
    let ms = |s: f64| (s * 1000.0).round() as u64;
    let policies: &[Policy] = match args.policy {
        PolicyArg::All => &Policy::ALL,
        PolicyArg::Hangar => &[Policy::Hangar],
        PolicyArg::Dedicated => &[Policy::Dedicated],
        PolicyArg::Keda => &[Policy::Keda],
        PolicyArg::HangarTasks => &[Policy::HangarTasks],
    };
    policies
        .iter()
        .map(|&p| {
            if p == Policy::HangarTasks {
                let pool = match args.pool_slots {
                    PoolSize::Slots(n) => Some(n.saturating_mul(args.concurrency)),
                    size => size.slots(trace, 1),
                };
                let mut m = Model::hangar_tasks(pool, ms(args.task_start_s));
                m.max_workers = args.max_workers.saturating_mul(args.concurrency);
                return m;
            }
            let mut m = Model::of(p, args.pool_slots.slots(trace, args.concurrency));
            if p == Policy::Hangar {
                m.cooldown_ms = ms(args.cooldown_s);
                m.start_latency_ms = ms(args.start_latency_s);
                m.evaluate_every_ms = ms(args.tick_s).max(1);
            }
            m.concurrency = args.concurrency;
            m.max_workers = args.max_workers;
            m
        })
        .collect()
}

/// One JSON object per selected policy; each also says how many times fewer worker-hours and
/// provisioned slot-hours it used than the dedicated policy when that one ran too (slot-hours
/// compare like for like when workers differ in size, as hangar-tasks' one-slot tasks do).
pub fn simulate(trace: &Trace, args: &RunArgs) -> Result<Vec<serde_json::Value>, SimulateCmdError> {
    let reports: Vec<Report> = models(trace, args)
        .iter()
        .map(|m| simulator::simulate(trace, m))
        .collect::<Result<_, _>>()?;
    let dedicated = reports
        .iter()
        .find(|r| r.policy == Policy::Dedicated.name())
        .map(|r| (r.worker_hours, r.provisioned_slot_hours));
    let ratio = |d: f64, x: f64| {
        if x > 0.0 {
            (d / x * 100.0).round() / 100.0
        } else {
            0.0
        }
    };
    Ok(reports
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if let (Some((wh, sh)), Some(o)) = (dedicated, v.as_object_mut()) {
                o.insert(
                    "fewer_worker_hours_than_dedicated".into(),
                    ratio(wh, r.worker_hours).into(),
                );
                o.insert(
                    "fewer_slot_hours_than_dedicated".into(),
                    ratio(sh, r.provisioned_slot_hours).into(),
                );
            }
            v
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use clap::Parser;
    use rstest::rstest;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: SimulateCmd,
    }

    fn run_args(args: &[&str]) -> RunArgs {
        let all = [&["hangar", "run"], args].concat();
        match Cli::try_parse_from(all).expect("parses").cmd {
            SimulateCmd::Run(r) => r,
            SimulateCmd::Generate(_) => unreachable!("run parsed"),
        }
    }

    #[rstest]
    #[case::auto("auto", Ok(PoolSize::Auto))]
    #[case::unlimited("unlimited", Ok(PoolSize::Unlimited))]
    #[case::slots("64", Ok(PoolSize::Slots(64)))]
    #[case::zero("0", Err(()))]
    #[case::words("lots", Err(()))]
    fn pool_sizes(#[case] s: &str, #[case] want: Result<PoolSize, ()>) {
        assert_eq!(s.parse::<PoolSize>().map_err(|_| ()), want);
    }

    #[test]
    fn an_unknown_policy_is_refused_with_the_known_ones() {
        let e = Cli::try_parse_from(["hangar", "run", "--policy", "fargate"])
            .err()
            .expect("refused");
        let msg = e.to_string();
        assert!(msg.contains("fargate") && msg.contains("hangar"), "{msg}");
    }

    #[rstest]
    #[case::negative_cooldown(&["--cooldown-s", "-1"])]
    #[case::zero_tenants(&["--tenants", "0"])]
    #[case::zero_concurrency(&["--concurrency", "0"])]
    #[case::zero_tick(&["--tick-s", "0"])]
    #[case::negative_task_start(&["--task-start-s", "-0.5"])]
    fn bad_numbers_are_refused(#[case] args: &[&str]) {
        let all = [&["hangar", "run"], args].concat();
        assert!(Cli::try_parse_from(all).is_err());
    }

    #[test]
    fn hangar_flags_apply_to_hangar_only() {
        let args = run_args(&[
            "--tenants",
            "3",
            "--hours",
            "1",
            "--cooldown-s",
            "30",
            "--start-latency-s",
            "5.5",
            "--pool-slots",
            "7",
        ]);
        let trace = simulator::generate(&args.generate.params()).expect("generates");
        let m = models(&trace, &args);
        assert_eq!(m.len(), 4);
        assert_eq!(
            (
                m[0].policy,
                m[0].cooldown_ms,
                m[0].start_latency_ms,
                m[0].pool_slots
            ),
            (Policy::Hangar, 30_000, 5_500, Some(7))
        );
        assert_eq!(m[1], Model::dedicated());
        assert_eq!(m[2], Model::keda());
        assert_eq!(
            m[3],
            Model::hangar_tasks(Some(35), simulator::model::DEFAULT_TASK_START_MS),
            "the same capacity in task slots: 7 workers of 5"
        );
    }

    #[test]
    fn the_task_pool_takes_its_start_and_the_trace_peak_of_tasks() {
        let args = run_args(&[
            "--tenants",
            "3",
            "--hours",
            "1",
            "--policy",
            "hangar-tasks",
            "--task-start-s",
            "1.25",
        ]);
        let trace = simulator::generate(&args.generate.params()).expect("generates");
        let m = models(&trace, &args);
        let peak = simulator::trace_stats(&trace, 1).zero_wait_peak_workers;
        assert_eq!(m, [Model::hangar_tasks(Some(peak), 1_250)]);
    }

    #[test]
    fn every_policy_reports_and_relates_to_dedicated() {
        let args = run_args(&["--tenants", "5", "--hours", "2"]);
        let trace = load(&args).expect("generated");
        let out = simulate(&trace, &args).expect("simulates");
        let names: Vec<&str> = out.iter().filter_map(|v| v["policy"].as_str()).collect();
        assert_eq!(names, ["hangar", "dedicated", "keda", "hangar-tasks"]);
        for v in &out {
            assert_eq!(v["tasks"], v["tasks_completed"]);
            assert!(v["fewer_worker_hours_than_dedicated"].is_number());
            assert!(v["fewer_slot_hours_than_dedicated"].is_number());
        }
        assert_eq!(out[1]["fewer_worker_hours_than_dedicated"], 1.0);
        assert_eq!(out[1]["fewer_slot_hours_than_dedicated"], 1.0);
    }

    /// The error and its causes as `hangar` prints them (anyhow's `{:#}`).
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            out = format!("{out}: {c}");
            cause = c.source();
        }
        out
    }

    #[test]
    fn a_bad_trace_file_is_named_with_its_line_and_field() {
        let dir = std::env::temp_dir().join(format!("hangar-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("bad.csv");
        std::fs::write(&path, "arrival_s,environment,duration_s\n0,a,10\n5,a,-3\n").expect("write");
        let args = run_args(&["--trace", path.to_str().expect("utf-8")]);
        let e = chain(&load(&args).expect_err("refused"));
        assert!(
            e.starts_with("failed to read trace ")
                && e.contains(
                    "bad.csv: failed to read line 3, field duration_s: must not be negative, found `-3`"
                ),
            "{e}"
        );
        let missing = run_args(&["--trace", "/nonexistent/trace.csv"]);
        let e = chain(&load(&missing).expect_err("refused"));
        assert!(
            e.starts_with("failed to read trace /nonexistent/trace.csv: "),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
