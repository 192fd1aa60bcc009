//! DAG runs through a tenant's client, as the end-to-end tests drive them: upload a DAG and
//! wait until its environment's Airflow lists it, trigger runs, read their task instances.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    reason = "test helpers fail the test"
)]

use std::time::{Duration, Instant};

use hangar_client::Client;
use reqwest::Method;
use serde_json::json;

use crate::airflow_api;

/// Uploads `source` as `{dag}.py`, waits until Airflow lists the DAG and unpauses it.
pub async fn deploy(c: &Client, tenant: &str, env: &str, dag: &str, source: &str) {
    let r = c
        .request(
            Method::PUT,
            &format!("v1/tenants/{tenant}/environments/{env}/dags/{dag}.py"),
        )
        .body(source.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let start = Instant::now();
    while airflow_api(c, tenant, env, Method::GET, &format!("dags/{dag}"), None)
        .await
        .0
        != 200
    {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{dag} not listed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (s, _) = airflow_api(
        c,
        tenant,
        env,
        Method::PATCH,
        &format!("dags/{dag}"),
        Some(json!({"is_paused": false})),
    )
    .await;
    assert_eq!(s, 200);
}

/// Triggers a run of `dag` and returns its run id.
pub async fn trigger(c: &Client, tenant: &str, env: &str, dag: &str) -> String {
    let (s, run) = airflow_api(
        c,
        tenant,
        env,
        Method::POST,
        &format!("dags/{dag}/dagRuns"),
        Some(json!({"logical_date": null})),
    )
    .await;
    assert_eq!(s, 200, "trigger {dag}: {run}");
    run["dag_run_id"].as_str().unwrap().to_owned()
}

/// The run's task instances, as Airflow's REST API lists them.
pub async fn task_instances(
    c: &Client,
    tenant: &str,
    env: &str,
    dag: &str,
    run: &str,
) -> Vec<serde_json::Value> {
    let (_, tis) = airflow_api(
        c,
        tenant,
        env,
        Method::GET,
        &format!("dags/{dag}/dagRuns/{run}/taskInstances?limit=100"),
        None,
    )
    .await;
    tis["task_instances"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The run's state (`queued`, `running`, `success`, `failed`).
pub async fn run_state(c: &Client, tenant: &str, env: &str, dag: &str, run: &str) -> String {
    let (_, r) = airflow_api(
        c,
        tenant,
        env,
        Method::GET,
        &format!("dags/{dag}/dagRuns/{run}"),
        None,
    )
    .await;
    r["state"].as_str().unwrap_or("unknown").to_owned()
}

/// A task instance's log (one try), as Airflow serves it.
pub async fn task_log(
    c: &Client,
    tenant: &str,
    env: &str,
    dag: &str,
    run: &str,
    ti: &serde_json::Value,
) -> String {
    let path = format!(
        "dags/{dag}/dagRuns/{run}/taskInstances/{}/logs/{}?full_content=true&map_index={}",
        ti["task_id"].as_str().unwrap_or_default(),
        ti["try_number"],
        ti["map_index"]
    );
    let (_, log) = airflow_api(c, tenant, env, Method::GET, &path, None).await;
    log["content"].to_string()
}
