//! Handlers of the Airflow CLI: a tenant runs an allow-listed command in its environment; the
//! environment's cell agent claims it and answers with the result.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hangar_tenants::api::{AirflowCliResult, CliCalls, Problem, RunAirflowCli};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::auth::Actor;

/// Runs an allow-listed Airflow CLI command in the environment (arguments as a list, no shell)
/// and answers with its output and exit code once it is done (editor or admin).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/environments/{env}/cli", tag = "environments",
    request_body = RunAirflowCli, security(("bearer" = [])),
    params(("tenant" = String, Path), ("env" = String, Path)),
    responses((status = 200, body = AirflowCliResult),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a command off the allow-list; `errors[0].field` names the argument, e.g. `args[0]`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the environment is not running, or its agent did not answer", body = Problem, content_type = "application/problem+json")))]
pub async fn run_airflow_cli(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, env)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<RunAirflowCli>,
) -> Result<Json<AirflowCliResult>, ApiError> {
    Ok(Json(
        s.services
            .run_airflow_cli(&actor, &tenant, &env, req)
            .await?,
    ))
}

/// The commands waiting for the cell's agent, each handed out once (cell token).
#[utoipa::path(post, path = "/v1/cells/{cell}/cli-calls/claim", tag = "cells", security(("bearer" = [])),
    params(("cell" = String, Path), ClaimQuery), responses((status = 200, body = CliCalls)))]
pub async fn claim_cli_calls(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(cell): ApiPath<String>,
    ApiQuery(q): ApiQuery<ClaimQuery>,
) -> Result<Json<CliCalls>, ApiError> {
    let wait = std::time::Duration::from_secs(q.wait);
    Ok(Json(s.services.claim_cli_calls(&actor, &cell, wait).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ClaimQuery {
    /// Seconds to wait for a command when none is waiting (long poll): at most 30, and at most
    /// half of the control plane's `HANGAR_CELL_TTL_SECS`.
    #[serde(default)]
    pub wait: u64,
}

/// The result of a command the cell's agent claimed (cell token).
#[utoipa::path(put, path = "/v1/cells/{cell}/cli-calls/{id}/result", tag = "cells",
    request_body = AirflowCliResult, security(("bearer" = [])),
    params(("cell" = String, Path), ("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn finish_cli_call(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((cell, id)): ApiPath<(String, Uuid)>,
    ApiJson(result): ApiJson<AirflowCliResult>,
) -> Result<StatusCode, ApiError> {
    s.services
        .finish_cli_call(&actor, &cell, id, result)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
