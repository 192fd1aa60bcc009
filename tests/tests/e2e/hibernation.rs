//! Hibernation on real Airflow 3.3.2, run by `hangar agent` (the process runtime): asked to
//! hibernate while a task runs, an environment keeps running until its DAG run is done, then
//! stops every process (none of its user's is left) and keeps its data; a restarted agent
//! leaves it asleep; a call to its Airflow API through Hangar wakes it, waits for it and is
//! answered, and the task that ran before ended `success` on its first try.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_hibernates_once_idle_stays_asleep_across_agents_and_wakes_on_use() {
    let stack = spawn_stack_with(false).await.unwrap();
    let editor = stack
        .app
        .tenant_with_role("dormant", Role::Editor)
        .await
        .unwrap();
    let mut agent = super::start_agent(&stack);
    let id = editor
        .create_environment(
            "dormant",
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
        "dormant",
        "etl",
        Phase::Available,
        Duration::from_secs(300),
    )
    .await;
    let uid = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(stack.env_home(id).join("logs")).unwrap(),
    );
    assert!(!processes_of(uid).is_empty());

    // A 25 s task runs.
    let r = editor
        .request(
            Method::PUT,
            "v1/tenants/dormant/environments/etl/dags/sleepy.py",
        )
        .body(super::SLEEPY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let start = Instant::now();
    while call(&editor, Method::GET, "dags/sleepy", None).await.0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(90), "DAG not listed");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (s, _) = call(
        &editor,
        Method::PATCH,
        "dags/sleepy",
        Some(json!({"is_paused": false})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, run) = call(
        &editor,
        Method::POST,
        "dags/sleepy/dagRuns",
        Some(json!({"logical_date": null})),
    )
    .await;
    assert_eq!(s, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    let task = format!("dags/sleepy/dagRuns/{run_id}/taskInstances/nap");
    let start = Instant::now();
    while call(&editor, Method::GET, &task, None).await.1["state"] != "running" {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "task not running"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Asked to hibernate while it runs: it keeps running until the run is done.
    let e = editor
        .hibernate_environment("dormant", "etl")
        .await
        .unwrap();
    assert_eq!(e.phase, Phase::Hibernating);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let e = editor.get_environment("dormant", "etl").await.unwrap();
    assert_eq!(e.phase, Phase::Hibernating, "{:?}", e.status_message);
    assert!(!processes_of(uid).is_empty());
    let asked = Instant::now();
    wait_for(
        &editor,
        "dormant",
        "etl",
        Phase::Hibernated,
        Duration::from_secs(120),
    )
    .await;
    println!(
        "hibernated {:.1} s after asking, 8 s into a 25 s task",
        asked.elapsed().as_secs_f64() + 8.0
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

    // A read through Hangar wakes it and is answered once it is back (a 503 to retry if that
    // takes longer than the platform waits).
    let woken = Instant::now();
    let (status, body) = loop {
        let (status, body) = call(&editor, Method::GET, &task, None).await;
        if status != 503 || woken.elapsed() > Duration::from_secs(120) {
            break (status, body);
        }
    };
    println!(
        "woken and answered in {:.1} s",
        woken.elapsed().as_secs_f64()
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "success", "{body}");
    assert_eq!(body["try_number"], 1, "{body}");
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
