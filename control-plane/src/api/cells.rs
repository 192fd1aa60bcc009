//! Handlers of the data-plane API: cells are created by the platform admin; their agents
//! register, long-poll their assignments, report observed state and hold their cell's tunnel
//! open with the cell's token.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hangar_tenants::api::{
    Assignments, Cell, CellCreated, CellList, CreateCell, Environment, Problem, RegisterCell,
};
use hangar_tenants::tunnel::PROTOCOL;
use hangar_tenants::ObservedState;
use serde::Deserialize;
use tracing::Instrument;
use utoipa::IntoParams;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::auth::Actor;
use crate::service::ServiceError;

/// Creates a cell and the token its agent registers with (platform admin only).
#[utoipa::path(post, path = "/v1/cells", tag = "cells", request_body = CreateCell, security(("bearer" = [])),
    responses((status = 201, body = CellCreated), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn create_cell(
    State(s): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<CreateCell>,
) -> Result<(StatusCode, Json<CellCreated>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.services.create_cell(&actor, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/cells", tag = "cells", security(("bearer" = [])),
    responses((status = 200, body = CellList)))]
pub async fn list_cells(
    State(s): State<AppState>,
    actor: Actor,
) -> Result<Json<CellList>, ApiError> {
    Ok(Json(CellList {
        cells: s.services.list_cells(&actor).await?,
    }))
}

/// An agent registers its cell's capacity and how it isolates environments (cell token); each
/// registration replaces the last. Waiting environments get placed.
#[utoipa::path(put, path = "/v1/cells/{cell}/registration", tag = "cells", request_body = RegisterCell,
    security(("bearer" = [])), params(("cell" = String, Path)),
    responses((status = 200, body = Cell), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn register_cell(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(cell): ApiPath<String>,
    ApiJson(req): ApiJson<RegisterCell>,
) -> Result<Json<Cell>, ApiError> {
    Ok(Json(s.services.register_cell(&actor, &cell, req).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AssignmentsQuery {
    /// The `cursor` of the previous answer; 0 for everything.
    #[serde(default)]
    pub since: i64,
    /// Seconds to wait for a change when there is none (long poll): at most 60, and at most
    /// half of the control plane's `HANGAR_CELL_TTL_SECS`.
    #[serde(default)]
    pub wait: u64,
}

/// The environments of the cell whose desired state changed after `since` (long poll).
#[utoipa::path(get, path = "/v1/cells/{cell}/assignments", tag = "cells", security(("bearer" = [])),
    params(("cell" = String, Path), AssignmentsQuery), responses((status = 200, body = Assignments)))]
pub async fn assignments(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(cell): ApiPath<String>,
    ApiQuery(q): ApiQuery<AssignmentsQuery>,
) -> Result<Json<Assignments>, ApiError> {
    let (cursor, environments) = s
        .services
        .assignments(&actor, &cell, q.since, Duration::from_secs(q.wait))
        .await?;
    Ok(Json(Assignments {
        cursor,
        environments,
    }))
}

/// The agent reports what it observes of one environment; the environment's phase follows.
#[utoipa::path(put, path = "/v1/cells/{cell}/environments/{env_id}/observed", tag = "cells",
    request_body = ObservedState, security(("bearer" = [])),
    params(("cell" = String, Path), ("env_id" = Uuid, Path)),
    responses((status = 200, body = Environment), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn report_observed(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((cell, env_id)): ApiPath<(String, String)>,
    ApiJson(observed): ApiJson<ObservedState>,
) -> Result<Json<Environment>, ApiError> {
    let id = Uuid::parse_str(&env_id)
        .map_err(|_| ApiError::Service(ServiceError::not_found("environment", env_id)))?;
    Ok(Json(
        s.services
            .report_observed(&actor, &cell, id, observed)
            .await?,
    ))
}

/// An agent opens its cell's tunnel (cell token, `Connection: upgrade`, `Upgrade:
/// hangar-tunnel/1`). The connection switches protocols; on it the control plane then sends,
/// as an HTTP/2 client, the requests for the cell's environments' Airflow, which the agent
/// forwards to each environment's own api-server. A newer tunnel of the cell replaces the
/// older one.
#[utoipa::path(get, path = "/v1/cells/{cell}/tunnel", tag = "cells", security(("bearer" = [])),
    params(("cell" = String, Path)),
    responses((status = 101, description = "Switched to the cell tunnel protocol"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn open_tunnel(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(cell): ApiPath<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let id = s.services.tunnel_cell(&actor, &cell)?;
    let asked = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(PROTOCOL));
    if !asked {
        return Err(ApiError::malformed(
            format!("a cell tunnel is opened with `Connection: upgrade` and `Upgrade: {PROTOCOL}`"),
            Some("Upgrade"),
        ));
    }
    let upgrade = hyper::upgrade::on(&mut req);
    let tunnels = s.services.tunnels.clone();
    let span = tracing::info_span!("cell_tunnel", cell = %cell);
    tokio::spawn(
        async move {
            match upgrade.await {
                Ok(io) => {
                    if let Err(e) = tunnels.serve(id, &cell, io).await {
                        tracing::warn!(error = %e, "failed to start a cell tunnel");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "failed to switch to a cell tunnel"),
            }
        }
        .instrument(span),
    );
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    resp.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
    Ok(resp)
}
