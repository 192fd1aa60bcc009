//! The soak's figures, one JSON object each, its verdict (the checks and their thresholds),
//! and its section of docs/benchmarks.md, from what the run collected.

use chrono::Utc;
use hangar_tenants::Executor;
use serde_json::{json, Value};

use super::load::{Recorder, Tally};
use super::procs::{Leftovers, Usage};
use super::{executor_name, Params};
use crate::{ms, percentile};

/// Growth from the end of the first window to the end that still counts as flat: RSS at most
/// this many times its first value, open descriptors at most this many times plus
/// [`FDS_SLACK`] (connections and Celery workers' log files come and go).
const GROWTH_LIMIT: f64 = 1.5;
const FDS_SLACK: u64 = 16;
/// The last window's API p99 may be at most this many times the first's plus
/// [`P99_SLACK_MS`].
const P99_GROWTH_LIMIT: f64 = 2.0;
const P99_SLACK_MS: f64 = 5.0;
/// Runs per environment that may be unfinished (in flight at the end) without counting as
/// missing.
const IN_FLIGHT_PER_ENV: i64 = 2;

/// The soak DAG's runs in one environment.
#[derive(Default)]
pub struct Runs {
    pub success: u64,
    pub failed: u64,
    /// Queued or running when the soak ended.
    pub unfinished: u64,
    /// Minutes that began between the unpause and the end: the runs due.
    pub due: i64,
    /// Scheduled runs' start after their due time (`start_date − run_after`), seconds, of
    /// the runs due after the unpause.
    pub late: Vec<f64>,
}

/// One minute of the soak.
pub struct Window {
    pub minute: u32,
    /// Requests that ended in it.
    pub tally: Tally,
    /// The control plane's and the agent's usage at its end.
    pub control_plane: Usage,
    pub agent: Usage,
    /// Environment processes at its end ([`super::procs::processes_under`]).
    pub processes: usize,
    /// Environments `AVAILABLE` at its end (`None`: the list failed).
    pub available: Option<usize>,
}

impl Window {
    fn json(&self) -> Value {
        let t = &self.tally;
        let usage = |u: &Usage| json!({"rss_mb": u.rss_mb(), "fds": u.fds, "threads": u.threads});
        json!({
            "minute": self.minute,
            "requests": t.requests,
            "server_errors": t.server_errors,
            "rejected": t.rejected,
            "failed": t.failed,
            "api_p50_ms": ms(&t.latency, 0.5),
            "api_p99_ms": ms(&t.latency, 0.99),
            "control_plane": usage(&self.control_plane),
            "agent": usage(&self.agent),
            "environment_processes": self.processes,
            "available": self.available,
        })
    }
}

/// A process's figure: its usage after the first window and at the end.
fn process_figure(
    figure: &str,
    windows: &[Window],
    of: impl Fn(&Window) -> Usage,
    exit: Option<std::process::ExitStatus>,
) -> Value {
    let first = windows.first().map(&of).unwrap_or_default();
    let last = windows.last().map(&of).unwrap_or_default();
    let max_rss = windows.iter().map(|w| of(w).rss_mb()).fold(0.0, f64::max);
    let max_fds = windows.iter().map(|w| of(w).fds).max().unwrap_or(0);
    json!({
        "figure": figure,
        "rss_mb_start": first.rss_mb(),
        "rss_mb_end": last.rss_mb(),
        "rss_mb_max": max_rss,
        "fds_start": first.fds,
        "fds_end": last.fds,
        "fds_max": max_fds,
        "threads_start": first.threads,
        "threads_end": last.threads,
        "flat": last.rss_kb as f64 <= first.rss_kb as f64 * GROWTH_LIMIT
            && last.fds as f64 <= first.fds as f64 * GROWTH_LIMIT + FDS_SLACK as f64,
        "stopped": exit.map_or("killed: no exit 30 s after SIGTERM".to_owned(), |s| s.to_string()),
        "stopped_cleanly": exit.is_some_and(|s| s.success()),
    })
}

/// What a soak run collected, for its figures.
pub struct Outcome<'a> {
    pub params: &'a Params,
    pub envs: &'a [(String, Executor)],
    pub setup_s: f64,
    pub windows: Vec<Window>,
    pub runs: Vec<Runs>,
    pub recorder: &'a Recorder,
    pub left: Leftovers,
    pub deleted_s: f64,
    pub control_plane_exit: Option<std::process::ExitStatus>,
    pub agent_exit: Option<std::process::ExitStatus>,
}

/// The run's figures: the API, the DAG runs, each platform process, what was left, and the
/// verdict with the windows.
pub fn figures(o: Outcome<'_>) -> Vec<Value> {
    let Outcome {
        params: p,
        envs,
        setup_s,
        windows,
        runs,
        recorder: rec,
        left,
        deleted_s,
        control_plane_exit: cp_exit,
        agent_exit,
    } = o;
    let all = &rec.all;
    let windows_p99: Vec<f64> = windows.iter().map(|w| ms(&w.tally.latency, 0.99)).collect();
    let (first_p99, last_p99) = (
        windows_p99.first().copied().unwrap_or_default(),
        windows_p99.last().copied().unwrap_or_default(),
    );
    let per_op: serde_json::Map<String, Value> = rec
        .per_op
        .iter()
        .map(|(op, t)| {
            (
                op.name().to_owned(),
                json!({
                    "requests": t.requests,
                    "p50_ms": ms(&t.latency, 0.5),
                    "p99_ms": ms(&t.latency, 0.99),
                    "server_errors": t.server_errors,
                    "rejected": t.rejected,
                    "failed": t.failed,
                }),
            )
        })
        .collect();
    let api = json!({
        "figure": "soak_api_p99_ms",
        "value": ms(&all.latency, 0.99),
        "p50_ms": ms(&all.latency, 0.5),
        "windows_p99_ms": windows_p99,
        "worst_window_p99_ms": windows_p99.iter().copied().fold(0.0, f64::max),
        "requests": all.requests,
        "requests_per_s": (all.requests as f64 / f64::from(p.minutes * 60) * 10.0).round() / 10.0,
        "server_errors": all.server_errors,
        "rejected": all.rejected,
        "failed": all.failed,
        "per_operation": per_op,
        "clients": p.clients,
    });

    let (success, failed, unfinished, due) = runs.iter().fold((0, 0, 0, 0), |a, r| {
        (
            a.0 + r.success,
            a.1 + r.failed,
            a.2 + r.unfinished,
            a.3 + r.due,
        )
    });
    let late: Vec<f64> = runs.iter().flat_map(|r| r.late.iter().copied()).collect();
    let dag_runs = json!({
        "figure": "soak_dag_runs",
        "success": success,
        "failed": failed,
        "unfinished": unfinished,
        "due": due,
        "lateness_p50_s": percentile(late.clone(), 0.5),
        "lateness_max_s": percentile(late, 1.0),
        "environments": envs.iter().zip(&runs).map(|((name, executor), r)| json!({
            "name": name,
            "executor": executor_name(*executor),
            "success": r.success,
            "failed": r.failed,
            "unfinished": r.unfinished,
            "due": r.due,
        })).collect::<Vec<_>>(),
    });
    let control_plane =
        process_figure("soak_control_plane", &windows, |w| w.control_plane, cp_exit);
    let agent_figure = process_figure("soak_agent", &windows, |w| w.agent, agent_exit);
    let leaked = json!({
        "figure": "soak_processes_leaked",
        "value": left.processes.len(),
        "in_environment_cgroups": left.in_cgroups,
        "environment_users_left": left.users,
        "leftover": left.processes.iter().take(20).map(|(pid, cmd)| {
            format!("{pid} {}", cmd.chars().take(200).collect::<String>())
        }).collect::<Vec<_>>(),
        "environments_deleted_s": deleted_s,
    });
    let checks = json!({
        "no_5xx": all.server_errors == 0,
        "every_request_answered": all.failed == 0,
        "no_request_rejected": all.rejected == 0,
        "api_p99_flat": last_p99 <= first_p99 * P99_GROWTH_LIMIT + P99_SLACK_MS,
        "dag_runs_succeeded": failed == 0
            && i64::try_from(success).unwrap_or(i64::MAX)
                >= due - IN_FLIGHT_PER_ENV * i64::from(p.environments),
        "control_plane_flat": control_plane["flat"].as_bool() == Some(true),
        "agent_flat": agent_figure["flat"].as_bool() == Some(true),
        "stopped_cleanly": control_plane["stopped_cleanly"].as_bool() == Some(true)
            && agent_figure["stopped_cleanly"].as_bool() == Some(true),
        "nothing_left": left.processes.is_empty() && left.in_cgroups == 0 && left.users == 0,
    });
    let holds_up = checks
        .as_object()
        .is_some_and(|c| c.values().all(|v| v.as_bool() == Some(true)));
    let summary = json!({
        "figure": "soak",
        "holds_up": holds_up,
        "checks": checks,
        "minutes": p.minutes,
        "environments": envs.iter().map(|(n, e)| format!("{n} ({})", executor_name(*e))).collect::<Vec<_>>(),
        "clients": p.clients,
        "setup_s": setup_s,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "windows": windows.iter().map(Window::json).collect::<Vec<_>>(),
    });
    vec![api, dag_runs, control_plane, agent_figure, leaked, summary]
}

fn find<'a>(r: &'a [Value], figure: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    r.iter().find(|v| v["figure"] == figure).unwrap_or(&NULL)
}

pub fn soak_markdown(r: &[Value]) -> String {
    let (api, runs, cp, agent, leaked, s) = (
        find(r, "soak_api_p99_ms"),
        find(r, "soak_dag_runs"),
        find(r, "soak_control_plane"),
        find(r, "soak_agent"),
        find(r, "soak_processes_leaked"),
        find(r, "soak"),
    );
    let failed_checks: Vec<String> = s["checks"]
        .as_object()
        .map(|c| {
            c.iter()
                .filter(|(_, v)| v.as_bool() != Some(true))
                .map(|(k, _)| format!("`{k}`"))
                .collect()
        })
        .unwrap_or_default();
    let verdict = if s["holds_up"].as_bool() == Some(true) {
        "**holds up** (every check below met)".to_owned()
    } else {
        format!("**does not hold up**: {}", failed_checks.join(", "))
    };
    let process = |v: &Value| {
        format!(
            "{} → {} MB (max {}) | {} → {} (max {}) | {} → {} | {}",
            v["rss_mb_start"],
            v["rss_mb_end"],
            v["rss_mb_max"],
            v["fds_start"],
            v["fds_end"],
            v["fds_max"],
            v["threads_start"],
            v["threads_end"],
            v["stopped"].as_str().unwrap_or_default(),
        )
    };
    let mut minutes = String::new();
    for w in s["windows"].as_array().into_iter().flatten() {
        minutes.push_str(&format!(
            "| {} | {} | {} / {} | {} / {} | {} MB / {} | {} MB / {} | {} | {} |\n",
            w["minute"],
            w["requests"],
            w["server_errors"],
            w["failed"],
            w["api_p50_ms"],
            w["api_p99_ms"],
            w["control_plane"]["rss_mb"],
            w["control_plane"]["fds"],
            w["agent"]["rss_mb"],
            w["agent"]["fds"],
            w["environment_processes"],
            w["available"],
        ));
    }
    let mut ops = String::new();
    for (op, t) in api["per_operation"].as_object().into_iter().flatten() {
        ops.push_str(&format!(
            "| `{op}` | {} | {} / {} ms | {} | {} |\n",
            t["requests"], t["p50_ms"], t["p99_ms"], t["server_errors"], t["failed"]
        ));
    }
    let envs: Vec<String> = s["environments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    format!(
        "## Soak: the platform under steady use for {m} minutes (`soak`)\n\n\
Command: `scripts/bench soak --minutes {m} --environments {e} --clients {c}` ({profile} build, {cores} cores). \
The whole platform on this machine: `hangar serve` and `hangar agent` of the same build as processes of their own \
(process runtime, the agent as shipped: 2 s tick, 60 s scale-down cooldown, the machine's worker and task slots), \
a private Postgres 15 and Redis 7, real Apache Airflow 3.3.2. {e} environments ({envs}), each with a DAG every \
minute (`* * * * *`, catchup off: a task sleeping 3 s and returning a value, then one checking it through XCom), \
unpaused for the whole run (set up in {setup} s before it). {c} API clients, each with a tenant admin token of its \
own and a pause of 50 ms after every request: `GET` environment 35 %, list environments 25 %, list DAG files 15 %, \
read a DAG file 5 %, read the audit log (50 entries) 10 %, overwrite a DAG file of its own 5 %, a DAG-runs read \
through the Airflow proxy 5 %; and once a minute each a `PATCH` of an environment's tags (a new revision that \
restarts nothing). Each minute is a window; memory and descriptors are read from /proc at each window's end, the \
first reading after one minute of warm-up. Measured {date}.\n\n\
| figure | value | aim |\n|---|---|---|\n\
| verdict | {verdict} | holds up |\n\
| Hangar API p99 / p50 over the run (Airflow proxy excluded) | {p99} / {p50} ms | |\n\
| API p99, first → last window (worst) | {first} → {last} ms ({worst} ms) | last ≤ {P99_GROWTH_LIMIT}× first + {P99_SLACK_MS} ms |\n\
| requests (all kinds) | {req} ({rps}/s) | |\n\
| answered 5xx / 4xx / unanswered (30 s) | {e5} / {e4} / {ef} | 0 / 0 / 0 |\n\
| DAG runs succeeded / failed / unfinished at the end (every run, with the one Airflow starts at the unpause for the minute just past), of the minutes due | {rs} / {rf} / {ru} of {rd} | 0 failed, ≤ {IN_FLIGHT_PER_ENV} per environment not succeeded |\n\
| scheduled runs' start after their due time (runs due after the unpause), p50 / max | {lp50} / {lmax} s | |\n\
| processes left after deleting every environment and stopping the agent | {leaked} (in the environments' cgroups: {cg}; their users left: {users}) | 0 |\n\
| every environment deleted (request → `DELETED`) | {deleted} s | |\n\n\
Control plane and agent, after the first minute → at the end (RSS end ≤ {GROWTH_LIMIT}× start, open \
descriptors ≤ {GROWTH_LIMIT}× start + {FDS_SLACK}); stopped with SIGTERM after the environments were deleted:\n\n\
| process | RSS | open fds | threads | stopped |\n|---|---|---|---|---|\n\
| control plane (`hangar serve`) | {cpu} |\n\
| agent (`hangar agent`) | {agu} |\n\n\
Per minute (requests of all kinds; latency of Hangar's API; environment processes: every process under the \
agent's folder but the platform's Redis; available: environments `AVAILABLE` at the window's end):\n\n\
| minute | requests | 5xx / unanswered | API p50 / p99 ms | control plane RSS / fds | agent RSS / fds | environment processes | available |\n\
|---|---|---|---|---|---|---|---|\n{minutes}\n\
Per operation over the run:\n\n\
| operation | requests | p50 / p99 | 5xx | unanswered |\n|---|---|---|---|---|\n{ops}\n",
        m = s["minutes"],
        e = envs.len(),
        c = s["clients"],
        envs = envs.join(", "),
        setup = s["setup_s"],
        cores = s["cores"],
        profile = if cfg!(debug_assertions) { "debug" } else { "release" },
        date = Utc::now().format("%Y-%m-%d"),
        p99 = api["value"],
        p50 = api["p50_ms"],
        first = api["windows_p99_ms"][0],
        last = api["windows_p99_ms"]
            .as_array()
            .and_then(|w| w.last())
            .cloned()
            .unwrap_or_default(),
        worst = api["worst_window_p99_ms"],
        req = api["requests"],
        rps = api["requests_per_s"],
        e5 = api["server_errors"],
        e4 = api["rejected"],
        ef = api["failed"],
        rs = runs["success"],
        rf = runs["failed"],
        ru = runs["unfinished"],
        rd = runs["due"],
        lp50 = runs["lateness_p50_s"],
        lmax = runs["lateness_max_s"],
        leaked = leaked["value"],
        cg = leaked["in_environment_cgroups"],
        users = leaked["environment_users_left"],
        deleted = leaked["environments_deleted_s"],
        cpu = process(cp),
        agu = process(agent),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures of a real 3-minute run (`scripts/bench soak --minutes 3 --no-docs`).
    const FIXTURE: &str = include_str!("soak_fixture.jsonl");

    #[test]
    fn the_section_says_the_verdict_and_has_a_row_per_minute_and_operation() {
        let figures: Vec<Value> = FIXTURE
            .lines()
            .map(|l| serde_json::from_str(l).expect("a figure per line"))
            .collect();
        let md = soak_markdown(&figures);
        assert!(md.contains("| verdict | **holds up**"), "{md}");
        assert!(
            md.contains("--minutes 3 --environments 3 --clients 4"),
            "{md}"
        );
        for minute in ["| 1 |", "| 2 |", "| 3 |"] {
            assert!(md.contains(minute), "{minute} in {md}");
        }
        assert!(md.contains("| `airflow_proxy` |"), "{md}");
        assert!(
            md.contains("| control plane (`hangar serve`) | 28.6 → 29.0 MB"),
            "{md}"
        );
        assert!(!md.contains("null"), "{md}");
    }
}
