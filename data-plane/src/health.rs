//! Airflow's own view of an environment's health, as every runtime reports it beside its
//! components' (a component can run while Airflow's scheduler heartbeat is stale).

use std::time::Duration;

use hangar_tenants::ComponentStatus;

/// Airflow's `/api/v2/monitor/health` under `base` (the api-server's URL with the
/// environment's path): the metadata database and the scheduler, dag-processor and (when
/// `triggerer` runs) triggerer heartbeats, as one `airflow` component.
pub async fn airflow_health(
    http: &reqwest::Client,
    base: &str,
    triggerer: bool,
) -> ComponentStatus {
    let unhealthy = |message: String| ComponentStatus {
        name: "airflow".into(),
        healthy: false,
        message: Some(message),
    };
    let resp = match http
        .get(format!("{base}/api/v2/monitor/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) => r,
        Err(_) => return unhealthy("the Airflow API does not answer yet".into()),
    };
    let Ok(body) = resp.json::<serde_json::Value>().await else {
        return unhealthy("the Airflow API answered no health document".into());
    };
    let sick: Vec<String> = ["metadatabase", "scheduler", "dag_processor", "triggerer"]
        .into_iter()
        .filter(|k| triggerer || *k != "triggerer")
        .filter(|k| body[*k]["status"].as_str() != Some("healthy"))
        .map(|k| format!("{k}: {}", body[k]["status"].as_str().unwrap_or("unknown")))
        .collect();
    if sick.is_empty() {
        ComponentStatus {
            name: "airflow".into(),
            healthy: true,
            message: None,
        }
    } else {
        unhealthy(sick.join(", "))
    }
}
