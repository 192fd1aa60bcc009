//! Operational endpoints: liveness with a database check, Prometheus metrics, the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::persistence;

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

/// Prometheus metrics: request counts and latencies, environments by phase.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    text.push_str(
        "# HELP hangar_environments Environments by phase.\n# TYPE hangar_environments gauge\n",
    );
    match persistence::environments::count_by_phase(&state.services.db.pool).await {
        Ok(rows) => {
            for (phase, n) in rows {
                text.push_str(&format!("hangar_environments{{phase=\"{phase}\"}} {n}\n"));
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: failed to count environments"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
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
