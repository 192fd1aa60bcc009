//! Logs and the platform's own observability end to end (issue 6), with the real `hangar agent`
//! binary and Airflow 3.3.2: component lines followed live, a failing task's log after its worker
//! scaled to zero and the agent was killed and replaced, the agent's reconcile spans exported
//! with OTLP, and the environment's health, syncs and reconcile failures in `/metrics`.

use std::time::{Duration, Instant};

use hangar_tenants::api::{CreateEnvironment, Role, UpdateEnvironment};
use hangar_tenants::Phase;
use hangar_tests::otlp::{OtlpReceiver, ReceivedSpan};
use hangar_tests::{airflow_api, spawn_stack_with, wait_for_phase as wait_for};
use reqwest::Method;
use serde_json::json;

use super::{hangar_bin, start_agent_with};

fn failing_dag(marker: &str) -> String {
    format!(
        r#"
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, default_args={{"retries": 0}})
def doomed():
    @task
    def explode():
        raise ValueError("{marker}")

    explode()


doomed()
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tasks_log_outlives_its_worker_and_the_agent_and_lines_are_followed_live() {
    let stack = spawn_stack_with(false).await.unwrap();
    let editor = stack
        .app
        .tenant_with_role("delta", Role::Editor)
        .await
        .unwrap();
    let viewer = stack
        .app
        .tenant_with_role("delta", Role::Viewer)
        .await
        .unwrap();
    let receiver = OtlpReceiver::start().await.unwrap();
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let mut first = start_agent_with(
        &stack,
        &[otel[0], otel[1], ("HANGAR_SCALE_DOWN_COOLDOWN_SECS", "3")],
    );
    let id = editor
        .create_environment(
            "delta",
            &CreateEnvironment {
                name: "etl".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .environment
        .id;
    wait_for(
        &editor,
        "delta",
        "etl",
        Phase::Available,
        Duration::from_secs(300),
    )
    .await;
    // The agent's apply is a trace of its own; the environment is up in the metrics.
    let apply = wait_span(&receiver, |s| {
        s.name == "reconcile apply" && s.attributes.get("revision").map(String::as_str) == Some("1")
    })
    .await;
    assert_eq!(apply.service, "hangar-agent");
    assert_eq!(apply.attributes["tenant"], "delta");
    assert_eq!(apply.attributes["env"], "etl");
    assert_ne!(apply.status, 2, "{apply:?}");
    let series = r#"{tenant="delta",environment="etl",cell="local"}"#;
    wait_metric(&stack, &format!("hangar_environment_up{series}"), |v| {
        v == 1.0
    })
    .await;

    // A viewer follows the scheduler; a line the scheduler's log gets is delivered at once.
    let mut follower = viewer
        .follow_logs(
            "delta",
            "etl",
            &[("component", "scheduler".into()), ("limit", "0".into())],
        )
        .await
        .unwrap();
    let marker = format!("followed-{}", uuid::Uuid::new_v4().simple());
    let written = Instant::now();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(stack.env_home(id).join("components/scheduler-0.log"))
            .unwrap();
        writeln!(
            f,
            "{} [info     ] {marker}",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ")
        )
        .unwrap();
    }
    let line = loop {
        let l = tokio::time::timeout(Duration::from_secs(10), follower.next())
            .await
            .expect("a line within 10 s")
            .unwrap()
            .expect("the stream stays open");
        assert_eq!(l.component, "scheduler-0");
        if l.message.ends_with(&marker) {
            break l;
        }
    };
    let latency = written.elapsed();
    eprintln!("follow latency: {latency:?}");
    assert!(
        latency < Duration::from_secs(2),
        "delivered after {latency:?}"
    );
    assert_eq!(line.level, hangar_tenants::api::LogLevel::Info);
    drop(follower);

    // A DAG whose only task fails with a traceback.
    let boom = format!("boom-{}", uuid::Uuid::new_v4().simple());
    editor
        .put_dag("delta", "etl", "doomed.py", failing_dag(&boom).into_bytes())
        .await
        .unwrap();
    let start = Instant::now();
    while airflow_api(&editor, "delta", "etl", Method::GET, "dags/doomed", None)
        .await
        .0
        != 200
    {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "doomed not listed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let changed =
        r#"hangar_dag_sync_total{tenant="delta",environment="etl",cell="local",outcome="changed"}"#;
    wait_metric(&stack, changed, |v| v >= 1.0).await;
    let (s, _) = airflow_api(
        &editor,
        "delta",
        "etl",
        Method::PATCH,
        "dags/doomed",
        Some(json!({"is_paused": false})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, run) = airflow_api(
        &editor,
        "delta",
        "etl",
        Method::POST,
        "dags/doomed/dagRuns",
        Some(json!({"logical_date": null})),
    )
    .await;
    assert_eq!(s, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let (_, r) = airflow_api(
            &editor,
            "delta",
            "etl",
            Method::GET,
            &format!("dags/doomed/dagRuns/{run_id}"),
            None,
        )
        .await;
        if r["state"] == "failed" {
            break;
        }
        assert_ne!(r["state"], "success");
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "run not failed: {r}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Its worker scales to zero, then the agent is killed (no chance to flush) and replaced.
    let start = Instant::now();
    loop {
        let e = editor.get_environment("delta", "etl").await.unwrap();
        let w = e.observed.and_then(|o| o.workers).unwrap_or_default();
        if w.scale_ups > 0 && w.actual == 0 && w.draining == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "workers not back to 0: {w:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = start_agent_with(&stack, &otel);

    // The task log, through Hangar (as a viewer): the traceback and the exception.
    let start = Instant::now();
    let log = loop {
        match viewer
            .task_log("delta", "etl", "doomed", &run_id, "explode", None)
            .await
        {
            Ok(text) if text.contains(&boom) => break text,
            other => assert!(
                start.elapsed() < Duration::from_secs(60),
                "task log not readable: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(log.contains("Traceback (most recent call last):"), "{log}");
    assert!(log.contains(&format!("ValueError: {boom}")), "{log}");
    assert!(log.contains("in explode"), "{log}");
    // The same try by number, and through the CLI.
    assert_eq!(
        viewer
            .task_log("delta", "etl", "doomed", &run_id, "explode", Some(1))
            .await
            .unwrap(),
        log
    );
    let token = viewer_token(&stack, "delta").await;
    let out = std::process::Command::new(hangar_bin())
        .args([
            "task-log", "etl", "--tenant", "delta", "doomed", &run_id, "explode",
        ])
        .env("HANGAR_URL", &stack.app.address)
        .env("HANGAR_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("ValueError: {boom}")));
    // The Airflow UI reads it too (its API, as the UI does), once the new agent serves the
    // environment over its tunnel again (a 503 saying so until then).
    let start = Instant::now();
    let ui = loop {
        let (s, ui) = airflow_api(
            &viewer,
            "delta",
            "etl",
            Method::GET,
            &format!("dags/doomed/dagRuns/{run_id}/taskInstances/explode/logs/1"),
            None,
        )
        .await;
        if s == 200 {
            break ui;
        }
        assert_eq!(s, 503, "{ui}");
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not served again by the new agent: {ui}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(ui.to_string().contains(&boom), "{ui}");

    // The worker's own component log was kept too, and `hangar logs` prints component lines.
    let workers = viewer
        .logs("delta", "etl", &[("component", "worker".into())])
        .await
        .unwrap();
    assert!(!workers.lines.is_empty(), "no worker lines");
    let out = std::process::Command::new(hangar_bin())
        .args([
            "logs",
            "etl",
            "--tenant",
            "delta",
            "--component",
            "scheduler",
            "--since",
            "1h",
        ])
        .env("HANGAR_URL", &stack.app.address)
        .env("HANGAR_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&marker));

    // A requirement that does not exist: a failed apply, counted by category and traced as an
    // error.
    let bad = UpdateEnvironment {
        requirements: Some("no-such-package-hangar-e2e==0\n".into()),
        ..Default::default()
    };
    editor
        .update_environment("delta", "etl", &bad, None)
        .await
        .unwrap();
    wait_for(
        &editor,
        "delta",
        "etl",
        Phase::UpdateFailed,
        Duration::from_secs(120),
    )
    .await;
    wait_metric(
        &stack,
        r#"hangar_reconcile_failures_total{tenant="delta",environment="etl",cell="local",category="requirements"}"#,
        |v| v >= 1.0,
    )
    .await;
    let failed = wait_span(&receiver, |s| {
        s.name == "reconcile apply" && s.attributes.get("revision").map(String::as_str) == Some("2")
    })
    .await;
    assert_eq!(failed.status, 2, "{failed:?}");
    assert_eq!(failed.attributes["error.category"], "requirements");

    editor.delete_environment("delta", "etl").await.unwrap();
    wait_for(
        &editor,
        "delta",
        "etl",
        Phase::Deleted,
        Duration::from_secs(120),
    )
    .await;
    // Its logs went with it.
    let kept = stack.bucket.join(format!(
        "tenants/delta/environments/etl/logs/{}",
        id.simple()
    ));
    let left = list_files(&kept);
    assert!(
        left.is_empty(),
        "logs left in {}: {left:?}\nagent log:\n{}",
        kept.display(),
        std::fs::read_to_string(stack.dir.join("agent.log")).unwrap_or_default()
    );
    second.kill().unwrap();
    second.wait().unwrap();
}

/// The first span `pred` holds for, within 20 s.
async fn wait_span(receiver: &OtlpReceiver, pred: impl Fn(&ReceivedSpan) -> bool) -> ReceivedSpan {
    match receiver.wait_for(Duration::from_secs(20), pred).await {
        Some(s) => s,
        None => panic!("span not received; got {:#?}", receiver.spans()),
    }
}

/// Waits up to 30 s for the series in `/metrics` to have a value `ok` accepts.
async fn wait_metric(stack: &hangar_tests::Stack, series: &str, ok: impl Fn(f64) -> bool) {
    let start = Instant::now();
    loop {
        let text = stack.app.metrics().await;
        let value = text.lines().find_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            (name == series).then(|| v.parse::<f64>().ok())?
        });
        if value.is_some_and(&ok) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{series} is {value:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn list_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
    {
        if e.path().is_dir() {
            out.extend(list_files(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

/// A new viewer token of the tenant, for the `hangar` binary.
async fn viewer_token(stack: &hangar_tests::Stack, tenant: &str) -> String {
    stack
        .app
        .admin
        .create_token(
            tenant,
            &hangar_tenants::api::CreateToken {
                name: "cli-viewer".into(),
                role: Role::Viewer,
            },
        )
        .await
        .unwrap()
        .token
}
