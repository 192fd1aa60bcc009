//! Hibernation on real Airflow 3.3.2, run by `hangar agent` (the process runtime): asked to
//! hibernate while a task runs and then while one is deferred, an environment keeps running
//! until its DAG run is done, then stops every process (none of its user's is left) and keeps
//! its data; a restarted agent leaves it asleep; an asset event posted through Hangar wakes it,
//! is answered, and the DAG scheduled on that asset runs; the tasks that ran before ended
//! `success` on their first try. An environment idle for its window hibernates by itself, and
//! wakes ahead of each scheduled run.

use std::time::{Duration, Instant};

use hangar_tenants::api::{CreateEnvironment, Role};
use hangar_tenants::Phase;
use hangar_tests::{spawn_stack_with, wait_for_phase as wait_for};
use reqwest::Method;
use serde_json::json;

/// A call of `dormant/etl`'s Airflow API through Hangar.
async fn call(
    editor: &hangar_client::Client,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    hangar_tests::airflow_api(editor, "dormant", "etl", method, path, body).await
}

/// A read of `dormant/etl`'s Airflow API through Hangar, retried while it answers 503 (an
/// Airflow just woken on a loaded machine can take longer than the proxy waits).
async fn call_retrying(editor: &hangar_client::Client, path: &str) -> (u16, serde_json::Value) {
    read_retrying(editor, "dormant", path).await
}

/// A read of `tenant/etl`'s Airflow API through Hangar, retried while it answers 503 as a
/// client is told to (the use woke it; on a loaded machine its Airflow can take longer to come
/// back than the proxy holds a request).
async fn read_retrying(
    editor: &hangar_client::Client,
    tenant: &str,
    path: &str,
) -> (u16, serde_json::Value) {
    let start = Instant::now();
    loop {
        let (status, body) =
            hangar_tests::airflow_api(editor, tenant, "etl", Method::GET, path, None).await;
        if status != 503 || start.elapsed() > Duration::from_secs(120) {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Live processes of the Unix user `uid`.
fn processes_of(uid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| super::alive(*pid))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|u| u.split_whitespace().next()?.parse::<u32>().ok())
                })
                == Some(uid)
        })
        .collect()
}

/// The tenant's environment `etl`, `AVAILABLE`: its Unix user's id.
async fn available_etl(
    stack: &hangar_tests::Stack,
    editor: &hangar_client::Client,
    tenant: &str,
    hibernate_after_idle_minutes: Option<u32>,
) -> u32 {
    let id = editor
        .create_environment(
            tenant,
            &CreateEnvironment {
                name: "etl".into(),
                hibernate_after_idle_minutes,
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .environment
        .id;
    wait_for(
        editor,
        tenant,
        "etl",
        Phase::Available,
        Duration::from_secs(300),
    )
    .await;
    let logs = std::fs::metadata(stack.env_home(id).join("logs")).unwrap();
    std::os::unix::fs::MetadataExt::uid(&logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_hibernates_once_idle_stays_asleep_across_agents_and_wakes_on_use() {
    let stack = spawn_stack_with(false).await.unwrap();
    let editor = stack
        .app
        .tenant_with_role("dormant", Role::Editor)
        .await
        .unwrap();
    let mut agent = super::start_agent(&stack);
    let uid = available_etl(&stack, &editor, "dormant", None).await;
    assert!(!processes_of(uid).is_empty());

    // A 15 s task runs, then one defers for 25 s; another DAG waits for an asset.
    for (file, body) in [("patient.py", PATIENT), ("on_ready.py", ON_READY)] {
        let r = editor
            .request(
                Method::PUT,
                &format!("v1/tenants/dormant/environments/etl/dags/{file}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let start = Instant::now();
    while call(&editor, Method::GET, "dags/on_ready", None).await.0 != 200
        || call(&editor, Method::GET, "dags/patient", None).await.0 != 200
    {
        assert!(start.elapsed() < Duration::from_secs(90), "DAGs not listed");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for dag in ["dags/patient", "dags/on_ready"] {
        let (s, _) = call(
            &editor,
            Method::PATCH,
            dag,
            Some(json!({"is_paused": false})),
        )
        .await;
        assert_eq!(s, 200);
    }
    let (s, assets) = call(&editor, Method::GET, "assets?name_pattern=ready", None).await;
    assert_eq!(s, 200, "{assets}");
    let asset_id = assets["assets"][0]["id"].as_i64().expect("the asset");
    let (s, run) = call(
        &editor,
        Method::POST,
        "dags/patient/dagRuns",
        Some(json!({"logical_date": null})),
    )
    .await;
    assert_eq!(s, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    let task = |id: &str| format!("dags/patient/dagRuns/{run_id}/taskInstances/{id}");
    let state_of = |id: &'static str| {
        let path = task(id);
        let editor = editor.clone();
        async move { call(&editor, Method::GET, &path, None).await.1["state"].clone() }
    };
    let start = Instant::now();
    while state_of("nap").await != "running" {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "task not running"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Asked to hibernate while a task runs: it keeps running until the run is done.
    let e = editor
        .hibernate_environment("dormant", "etl")
        .await
        .unwrap();
    assert_eq!(e.phase, Phase::Hibernating);
    let asked = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let e = editor.get_environment("dormant", "etl").await.unwrap();
    assert_eq!(e.phase, Phase::Hibernating, "{:?}", e.status_message);
    assert!(!processes_of(uid).is_empty());
    // A deferred task holds it up too (watching its state is a use, which would wake it:
    // its deferral is read from the task's own log in the environment's home instead).
    let deferred_log = stack.env_home(e.id).join("logs");
    let start = Instant::now();
    while !log_mentions(&deferred_log, "Pausing task as DEFERRED") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "task not deferred"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let e = editor.get_environment("dormant", "etl").await.unwrap();
    assert_eq!(e.phase, Phase::Hibernating, "{:?}", e.status_message);
    assert!(!processes_of(uid).is_empty());
    wait_for(
        &editor,
        "dormant",
        "etl",
        Phase::Hibernated,
        Duration::from_secs(120),
    )
    .await;
    println!(
        "hibernated {:.1} s after asking, while a 15 s task ran before a 25 s deferral",
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(processes_of(uid), Vec::<u32>::new(), "processes left");

    // Another agent leaves it asleep.
    agent.kill().unwrap();
    agent.wait().unwrap();
    let mut agent = super::start_agent(&stack);
    stack.app.wait_for_tunnel("local", true).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let e = editor.get_environment("dormant", "etl").await.unwrap();
    assert_eq!(e.phase, Phase::Hibernated);
    assert_eq!(
        processes_of(uid),
        Vec::<u32>::new(),
        "started by the next agent"
    );

    // An asset event posted through Hangar wakes it and is answered once it is back (a 503 to
    // retry if that takes longer than the platform waits); the DAG waiting for the asset runs.
    let woken = Instant::now();
    let (status, body) = loop {
        let (status, body) = call(
            &editor,
            Method::POST,
            "assets/events",
            Some(json!({"asset_id": asset_id, "extra": {"from": "test"}})),
        )
        .await;
        if status != 503 || woken.elapsed() > Duration::from_secs(120) {
            break (status, body);
        }
    };
    println!(
        "woken and answered in {:.1} s",
        woken.elapsed().as_secs_f64()
    );
    assert_eq!(status, 200, "{body}");
    for id in ["nap", "pause"] {
        let (status, body) = call_retrying(&editor, &task(id)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "success", "{id}: {body}");
        assert_eq!(body["try_number"], 1, "{id}: {body}");
    }
    let start = Instant::now();
    loop {
        let (s, runs) = call_retrying(&editor, "dags/on_ready/dagRuns").await;
        assert_eq!(s, 200, "{runs}");
        let states: Vec<_> = runs["dag_runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state"].clone())
            .collect();
        if states == [json!("success")] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the asset's DAG did not run: {states:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        editor
            .get_environment("dormant", "etl")
            .await
            .unwrap()
            .phase,
        Phase::Available
    );
    assert!(!processes_of(uid).is_empty());
    agent.kill().unwrap();
    agent.wait().unwrap();
}

/// A 15 s task, then one deferred for 25 s (the triggerer holds it).
const PATIENT: &str = r#"
from datetime import datetime, timedelta

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import BaseOperator, dag, task


class Pause(BaseOperator):
    def execute(self, context):
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=25)), method_name="done")

    def done(self, context, event=None):
        return "resumed"


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def patient():
    @task
    def nap():
        import time
        time.sleep(15)
        return "rested"

    nap() >> Pause(task_id="pause")


patient()
"#;

/// A DAG scheduled on an asset.
const ON_READY: &str = r#"
from datetime import datetime

from airflow.sdk import Asset, dag, task


@dag(schedule=[Asset(name="ready", uri="hangar://ready")], start_date=datetime(2024, 1, 1), catchup=False)
def on_ready():
    @task
    def consume():
        return "consumed"

    consume()


on_ready()
"#;

/// Whether a file under `dir` (the environment's logs) contains `needle`.
fn log_mentions(dir: &std::path::Path, needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            log_mentions(&path, needle)
        } else {
            std::fs::read_to_string(&path).is_ok_and(|s| s.contains(needle))
        }
    })
}

/// An environment whose DAG runs every 2 minutes, idle for its window (one minute, 10 s long
/// in this test), hibernates by itself between its runs and wakes ahead of each one: over 3
/// cycles every run starts within 30 s of its due time, and between runs it is hibernated with
/// no process of its user left. Reading its Airflow afterwards wakes it and is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_environment_hibernates_by_itself_and_wakes_ahead_of_each_scheduled_run() {
    let stack = hangar_tests::spawn_stack_opts(hangar_tests::StackOptions {
        idle_minute_secs: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let editor = stack
        .app
        .tenant_with_role("cron", Role::Editor)
        .await
        .unwrap();
    let uid = available_etl(&stack, &editor, "cron", Some(1)).await;
    let r = editor
        .request(
            Method::PUT,
            "v1/tenants/cron/environments/etl/dags/every_two_minutes.py",
        )
        .body(hangar_tests::EVERY_TWO_MINUTES)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let api = |method, path: &'static str, body| {
        hangar_tests::airflow_api(&editor, "cron", "etl", method, path, body)
    };
    let start = Instant::now();
    while api(Method::GET, "dags/every_two_minutes", None).await.0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(90), "DAG not listed");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (s, _) = api(
        Method::PATCH,
        "dags/every_two_minutes",
        Some(json!({"is_paused": false})),
    )
    .await;
    assert_eq!(s, 200);
    let asked = chrono::Utc::now();

    // Watch the phase only (reading its Airflow would wake it) for 3 runs and a bit.
    let watched = Instant::now();
    let mut asleep_at = Vec::new();
    while watched.elapsed() < Duration::from_secs(3 * 120 + 90) {
        let e = editor.get_environment("cron", "etl").await.unwrap();
        if e.phase == Phase::Hibernated && processes_of(uid).is_empty() {
            asleep_at.push(chrono::Utc::now());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let ended = chrono::Utc::now();
    let audit = stack.app.admin.audit("cron").await.unwrap();
    assert!(
        audit
            .entries
            .iter()
            .any(|e| e.action == "environment.hibernate" && e.details["by"] == "idle"),
        "no hibernation for idleness in the audit log"
    );

    // Its runs, read once it is awake again (the read wakes it).
    let (s, runs) = read_retrying(
        &editor,
        "cron",
        "dags/every_two_minutes/dagRuns?order_by=run_after&limit=100",
    )
    .await;
    assert_eq!(s, 200, "{runs}");
    let runs: Vec<(
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
        String,
    )> = runs["dag_runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["run_type"] == "scheduled")
        .filter_map(|r| {
            Some((
                r["run_after"].as_str()?.parse().ok()?,
                r["start_date"].as_str()?.parse().ok()?,
                r["state"].as_str()?.to_owned(),
            ))
        })
        // The runs due once it was left alone, done by the end of the watch.
        .filter(|(due, _, _)| *due > asked && *due < ended - chrono::Duration::seconds(60))
        .collect();
    let late: Vec<f64> = runs
        .iter()
        .map(|(due, started, _)| (*started - *due).num_milliseconds() as f64 / 1000.0)
        .collect();
    println!(
        "scheduled runs started late by {late:?} s; hibernated {} of the watched polls",
        asleep_at.len()
    );
    assert!(runs.len() >= 3, "{runs:?}");
    assert!(late.iter().all(|s| *s <= 30.0), "{late:?}");
    assert!(
        runs.iter().all(|(_, _, state)| state == "success"),
        "{runs:?}"
    );
    // Asleep between runs: between most pairs (on a loaded machine a run can end too close to
    // the next one's wake-up, 60 s ahead of it, for a sleep of 10 s or more).
    let gaps = runs.windows(2).count();
    let slept = runs
        .windows(2)
        .filter(|pair| {
            let (a, b) = (pair[0].0, pair[1].0);
            asleep_at.iter().any(|t| *t > a && *t < b)
        })
        .count();
    println!("hibernated between {slept} of {gaps} pairs of runs");
    assert!(
        slept * 2 >= gaps && slept > 0,
        "hibernated between {slept} of {gaps} pairs of runs: {asleep_at:?}"
    );
    stack.shutdown().await;
}
