//! Operational endpoints: liveness with a database check, Prometheus metrics, the OpenAPI document.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::AppState;
use crate::persistence::{self, environments::PhaseCount};
use crate::service::cells::contact;
use hangar_tenants::api::{CellPool, Problem};
use hangar_tenants::{ObservedState, Phase};
use std::collections::BTreeMap;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub database: &'static str,
}

/// Liveness and readiness: 200 when the database answers, 503 otherwise.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.services.db.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(Health {
                status: "ok",
                database: "ok",
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(Health {
                    status: "unavailable",
                    database: "unreachable",
                }),
            )
        }
    }
}

/// Prometheus metrics: request counts and latencies, environments by phase, each environment's
/// health, reconcile failures, DAG syncs, tasks and workers, each cell's worker pool. Takes the
/// metrics token (`HANGAR_METRICS_TOKEN`) or the platform admin's.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain"),
        (status = 401, description = "No token, or an unknown one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A tenant's or a cell's token", body = Problem, content_type = "application/problem+json")))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    state
        .services
        .authorize_scrape(super::extract::bearer(&headers))
        .await?;
    let mut text = state.metrics.render();
    let ttl = state.services.cell_ttl;
    match persistence::environments::count_by_phase(&state.services.db.pool).await {
        Ok(rows) => text.push_str(&render_phases(&rows, ttl)),
        Err(e) => tracing::warn!(error = %e, "metrics: failed to count environments"),
    }
    let db = &state.services.db.pool;
    match (
        persistence::environments::observed_states(db).await,
        persistence::cells::list(db).await,
    ) {
        (Ok(rows), Ok(cells)) => {
            let envs: Vec<EnvFigures> = rows
                .into_iter()
                .filter_map(|r| {
                    let observed = serde_json::from_value(r.observed)
                        .map_err(|e| {
                            tracing::warn!(tenant = %r.tenant, env = %r.name, error = %e,
                                "metrics: unreadable observed state");
                        })
                        .ok()?;
                    let cell_lost = contact(r.cell.as_deref(), r.cell_silent_secs)
                        .is_some_and(|c| c.is_lost(ttl));
                    Some(EnvFigures {
                        tenant: r.tenant,
                        env: r.name,
                        cell: r.cell,
                        cell_lost,
                        observed,
                    })
                })
                .collect();
            let panics: Vec<(String, i64)> = cells
                .iter()
                .filter(|c| c.registered_at.is_some())
                .map(|c| (c.name.clone(), c.agent_panics))
                .collect();
            let cells: Vec<(String, CellPool)> = cells
                .into_iter()
                .filter_map(|c| {
                    let slots = u32::try_from(c.worker_slots?).ok()?;
                    let held = u32::try_from(c.workers).unwrap_or(0);
                    Some((c.name, CellPool::new(slots, held)))
                })
                .collect();
            text.push_str(&render_environments(&envs));
            text.push_str(&render_workers(&envs, &cells));
            text.push_str(&render_agent_panics(&panics));
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "metrics: failed to read environments and cells");
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// `hangar_environments{phase}`: environments by phase as they read, so those of a lost cell
/// count where `GET` shows them.
fn render_phases(rows: &[PhaseCount], ttl: std::time::Duration) -> String {
    use std::fmt::Write;
    let mut by_phase: BTreeMap<String, i64> = BTreeMap::new();
    for r in rows {
        let lost = contact(r.cell.as_deref(), r.cell_silent_secs).is_some_and(|c| c.is_lost(ttl));
        let phase = match r.phase.parse::<Phase>() {
            Ok(p) if lost => p.while_cell_silent().as_str().to_owned(),
            _ => r.phase.clone(),
        };
        *by_phase.entry(phase).or_default() += r.n;
    }
    let mut samples = String::new();
    for (phase, n) in by_phase {
        let _ = writeln!(
            samples,
            "hangar_environments{{phase=\"{}\"}} {n}",
            label(&phase)
        );
    }
    let mut out = String::new();
    family(
        &mut out,
        "hangar_environments",
        "gauge",
        "Environments by phase.",
        &samples,
    );
    out
}

/// One live environment and what its agent last reported.
struct EnvFigures {
    tenant: String,
    env: String,
    cell: Option<String>,
    /// Its cell has been silent for `HANGAR_CELL_TTL_SECS`: its last report is stale.
    cell_lost: bool,
    observed: ObservedState,
}

impl EnvFigures {
    /// The environment's labels: `tenant="…",environment="…",cell="…"`.
    fn labels(&self) -> String {
        format!(
            "tenant=\"{}\",environment=\"{}\",cell=\"{}\"",
            label(&self.tenant),
            label(&self.env),
            label(self.cell.as_deref().unwrap_or(""))
        )
    }
}

/// Per environment: whether it is up (every component its agent reported is healthy, Airflow's
/// own health check included, and its cell is not lost), each component, and its reconciler's
/// counters (failures by category, DAG syncs by outcome, plugin restarts) since the cell's agent started.
fn render_environments(envs: &[EnvFigures]) -> String {
    use std::fmt::Write;
    let mut up = String::new();
    let mut components = String::new();
    let mut failures = String::new();
    let mut syncs = String::new();
    let mut plugin_restarts = String::new();
    let mut log_disk = String::new();
    for e in envs {
        let labels = e.labels();
        let o = &e.observed;
        let healthy =
            !e.cell_lost && !o.components.is_empty() && o.components.iter().all(|c| c.healthy);
        let _ = writeln!(
            up,
            "hangar_environment_up{{{labels}}} {}",
            u8::from(healthy)
        );
        let _ = writeln!(
            log_disk,
            "hangar_environment_log_disk_full{{{labels}}} {}",
            u8::from(o.log_disk.is_some())
        );
        for c in &o.components {
            let _ = writeln!(
                components,
                "hangar_environment_component_up{{{labels},component=\"{}\"}} {}",
                label(&c.name),
                u8::from(c.healthy)
            );
        }
        if let Some(r) = &o.reconcile {
            for (category, n) in &r.failures {
                let _ = writeln!(
                    failures,
                    "hangar_reconcile_failures_total{{{labels},category=\"{}\"}} {n}",
                    label(category)
                );
            }
            for (outcome, n) in [
                ("changed", r.dag_syncs_changed),
                ("failed", r.dag_syncs_failed),
            ] {
                let _ = writeln!(
                    syncs,
                    "hangar_dag_sync_total{{{labels},outcome=\"{outcome}\"}} {n}"
                );
            }
            let _ = writeln!(
                plugin_restarts,
                "hangar_plugin_restarts_total{{{labels}}} {}",
                r.plugin_restarts
            );
        }
    }
    let mut out = String::new();
    family(&mut out, "hangar_environment_up", "gauge",
        "1 when every component of the environment is healthy (Airflow's health check included) and its cell reports, else 0.", &up);
    family(
        &mut out,
        "hangar_environment_component_up",
        "gauge",
        "1 when the component is healthy, as last reported.",
        &components,
    );
    family(
        &mut out,
        "hangar_reconcile_failures_total",
        "counter",
        "Failed reconcile steps by category since the cell's agent started.",
        &failures,
    );
    family(&mut out, "hangar_dag_sync_total", "counter",
        "Syncs from the bucket that changed the DAG folder or failed, since the cell's agent started.", &syncs);
    family(&mut out, "hangar_plugin_restarts_total", "counter",
        "Restarts of the environment's components to load changed plugins, since the cell's agent started.", &plugin_restarts);
    family(&mut out, "hangar_environment_log_disk_full", "gauge",
        "1 while the disk under the environment's log folders is full (its tasks keep running; log lines written meanwhile are dropped), else 0.", &log_disk);
    out
}

/// `hangar_cell_agent_panics_total{cell}`: panics of each registered cell's agent loops since
/// the agent started (each logged and the loop started again), as the agent last registered.
fn render_agent_panics(cells: &[(String, i64)]) -> String {
    use std::fmt::Write;
    let mut samples = String::new();
    for (cell, n) in cells {
        let _ = writeln!(
            samples,
            "hangar_cell_agent_panics_total{{cell=\"{}\"}} {n}",
            label(cell)
        );
    }
    let mut out = String::new();
    family(
        &mut out,
        "hangar_cell_agent_panics_total",
        "counter",
        "Panics of the cell's agent loops since the agent started; each loop was started again.",
        &samples,
    );
    out
}

/// A per-cell gauge: its name, its help, and its value from the cell's pool.
type CellFigure = (&'static str, &'static str, fn(&CellPool) -> f64);

/// A metric family in Prometheus' text format: its help and type lines, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &str) {
    use std::fmt::Write;
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{samples}");
}

/// The worker gauges and counters in Prometheus' text format: per environment (tenant,
/// environment, cell) its tasks and workers as last reported; per cell its pool (as
/// `GET /v1/cells` shows it).
fn render_workers(envs: &[EnvFigures], cells: &[(String, CellPool)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut tasks = String::new();
    let mut workers = String::new();
    let mut scaling = String::new();
    for e in envs {
        let Some(w) = &e.observed.workers else {
            continue;
        };
        let labels = e.labels();
        for (state, n) in [("queued", w.queued), ("running", w.running)] {
            let _ = writeln!(
                tasks,
                "hangar_environment_tasks{{{labels},state=\"{state}\"}} {n}"
            );
        }
        for (state, n) in [
            ("desired", w.desired),
            ("actual", w.actual),
            ("draining", w.draining),
        ] {
            let _ = writeln!(
                workers,
                "hangar_environment_workers{{{labels},state=\"{state}\"}} {n}"
            );
        }
        for (direction, n) in [("up", w.scale_ups), ("down", w.scale_downs)] {
            let _ = writeln!(
                scaling,
                "hangar_environment_scaling_total{{{labels},direction=\"{direction}\"}} {n}"
            );
        }
    }
    family(
        &mut out,
        "hangar_environment_tasks",
        "gauge",
        "Task instances queued or running, as last reported.",
        &tasks,
    );
    family(
        &mut out,
        "hangar_environment_workers",
        "gauge",
        "Celery workers: desired (the environment's pool share), actual (taking tasks), draining.",
        &workers,
    );
    family(
        &mut out,
        "hangar_environment_scaling_total",
        "counter",
        "Scaling steps carried out since the cell's agent started.",
        &scaling,
    );
    let cell_figures: [CellFigure; 3] = [
        (
            "hangar_cell_worker_slots",
            "Worker slots of the cell's shared pool.",
            |p| f64::from(p.worker_slots),
        ),
        (
            "hangar_cell_workers",
            "Worker slots held by workers taking tasks or draining.",
            |p| f64::from(p.workers),
        ),
        (
            "hangar_cell_pool_utilization",
            "Held worker slots / the pool's slots.",
            |p| p.utilization,
        ),
    ];
    for (name, help, figure) in cell_figures {
        let mut samples = String::new();
        for (cell, pool) in cells {
            let _ = writeln!(
                samples,
                "{name}{{cell=\"{}\"}} {}",
                label(cell),
                figure(pool)
            );
        }
        family(&mut out, name, "gauge", help, &samples);
    }
    out
}

/// A Prometheus label value with `\\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
pub async fn openapi_document(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi_json.as_str().to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_tenants::WorkerStatus;

    fn w(queued: u32, running: u32, desired: u32, actual: u32, draining: u32) -> WorkerStatus {
        WorkerStatus {
            queued,
            running,
            desired,
            actual,
            draining,
            scale_ups: 3,
            scale_downs: 2,
        }
    }

    #[test]
    fn worker_metrics_per_environment_and_per_cell_pool() {
        let env = |tenant: &str, env: &str, cell: &str, workers| EnvFigures {
            tenant: tenant.into(),
            env: env.into(),
            cell: Some(cell.into()),
            cell_lost: false,
            observed: ObservedState {
                workers: Some(workers),
                ..Default::default()
            },
        };
        let envs = vec![
            env("a", "etl", "local", w(4, 5, 2, 2, 1)),
            env("b", "ml", "local", w(0, 0, 0, 0, 0)),
            env("c", "x", "other", w(0, 1, 1, 1, 0)),
        ];
        let cells = vec![
            ("local".into(), CellPool::new(4, 3)),
            ("other".into(), CellPool::new(0, 1)),
            ("idle".into(), CellPool::new(2, 0)),
        ];
        let text = render_workers(&envs, &cells);
        for line in [
            r#"hangar_environment_tasks{tenant="a",environment="etl",cell="local",state="queued"} 4"#,
            r#"hangar_environment_workers{tenant="a",environment="etl",cell="local",state="draining"} 1"#,
            r#"hangar_environment_scaling_total{tenant="b",environment="ml",cell="local",direction="down"} 2"#,
            r#"hangar_cell_workers{cell="local"} 3"#,
            r#"hangar_cell_pool_utilization{cell="local"} 0.75"#,
            r#"hangar_cell_pool_utilization{cell="other"} 0"#,
            r#"hangar_cell_workers{cell="idle"} 0"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn environment_health_failures_and_syncs_per_environment() {
        let mut sick = hangar_tenants::ObservedState {
            components: vec![
                hangar_tenants::ComponentStatus {
                    name: "scheduler-0".into(),
                    healthy: true,
                    message: None,
                },
                hangar_tenants::ComponentStatus {
                    name: "airflow".into(),
                    healthy: false,
                    message: Some("scheduler heartbeat late".into()),
                },
            ],
            ..Default::default()
        };
        sick.reconcile = Some(hangar_tenants::ReconcileCounters {
            failures: [("requirements".to_owned(), 3)].into(),
            dag_syncs_changed: 2,
            dag_syncs_failed: 1,
            plugin_restarts: 4,
        });
        sick.log_disk = Some(hangar_tenants::LogDiskFull {
            since: chrono::Utc::now(),
            folders: vec!["tasks".into()],
        });
        let mut well = sick.clone();
        well.components[1].healthy = true;
        well.reconcile = None;
        well.log_disk = None;
        let envs = [
            EnvFigures {
                tenant: "a".into(),
                env: "etl".into(),
                cell: Some("local".into()),
                cell_lost: false,
                observed: sick,
            },
            EnvFigures {
                tenant: "b".into(),
                env: "ml".into(),
                cell: Some("local".into()),
                cell_lost: false,
                observed: well.clone(),
            },
            EnvFigures {
                tenant: "c".into(),
                env: "new".into(),
                cell: None,
                cell_lost: false,
                observed: ObservedState::default(),
            },
            EnvFigures {
                tenant: "d".into(),
                env: "old".into(),
                cell: Some("gone".into()),
                cell_lost: true,
                observed: well,
            },
        ];
        let text = render_environments(&envs);
        for line in [
            r#"hangar_environment_up{tenant="a",environment="etl",cell="local"} 0"#,
            r#"hangar_environment_up{tenant="b",environment="ml",cell="local"} 1"#,
            r#"hangar_environment_up{tenant="c",environment="new",cell=""} 0"#,
            r#"hangar_environment_up{tenant="d",environment="old",cell="gone"} 0"#,
            r#"hangar_environment_component_up{tenant="a",environment="etl",cell="local",component="airflow"} 0"#,
            r#"hangar_environment_component_up{tenant="a",environment="etl",cell="local",component="scheduler-0"} 1"#,
            r#"hangar_reconcile_failures_total{tenant="a",environment="etl",cell="local",category="requirements"} 3"#,
            r#"hangar_dag_sync_total{tenant="a",environment="etl",cell="local",outcome="changed"} 2"#,
            r#"hangar_dag_sync_total{tenant="a",environment="etl",cell="local",outcome="failed"} 1"#,
            r#"hangar_plugin_restarts_total{tenant="a",environment="etl",cell="local"} 4"#,
            r#"hangar_environment_log_disk_full{tenant="a",environment="etl",cell="local"} 1"#,
            r#"hangar_environment_log_disk_full{tenant="b",environment="ml",cell="local"} 0"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        assert!(
            !text.contains(r#"hangar_dag_sync_total{tenant="b""#),
            "{text}"
        );
    }

    #[test]
    fn environments_of_a_lost_cell_count_as_they_read() {
        let count = |phase: &str, cell: Option<&str>, silent: f64, n| PhaseCount {
            phase: phase.into(),
            cell: cell.map(str::to_owned),
            cell_silent_secs: cell.map(|_| silent),
            n,
        };
        let rows = [
            count("AVAILABLE", Some("live"), 5.0, 2),
            count("AVAILABLE", Some("gone"), 600.0, 3),
            count("CREATING", None, 0.0, 1),
            count("DELETING", Some("gone"), 600.0, 1),
            count("UNAVAILABLE", Some("live"), 5.0, 1),
        ];
        let text = render_phases(&rows, std::time::Duration::from_secs(120));
        assert_eq!(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            [
                r#"hangar_environments{phase="AVAILABLE"} 2"#,
                r#"hangar_environments{phase="CREATING"} 1"#,
                r#"hangar_environments{phase="DELETING"} 1"#,
                r#"hangar_environments{phase="UNAVAILABLE"} 4"#,
            ]
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
