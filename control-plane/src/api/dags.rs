//! Handlers for an environment's DAG files (`…/dags/{path}`): the body is the file itself.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use hangar_tenants::api::{DagFile, DagFileList};

use super::error::ApiError;
use super::AppState;
use crate::auth::Actor;

pub async fn put_dag(
    State(s): State<AppState>,
    actor: Actor,
    Path((tenant, env, path)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<DagFile>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(
            s.services
                .put_dag(&actor, &tenant, &env, &path, &body)
                .await?,
        ),
    ))
}

pub async fn get_dag(
    State(s): State<AppState>,
    actor: Actor,
    Path((tenant, env, path)): Path<(String, String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = s.services.get_dag(&actor, &tenant, &env, &path).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}

pub async fn delete_dag(
    State(s): State<AppState>,
    actor: Actor,
    Path((tenant, env, path)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    s.services.delete_dag(&actor, &tenant, &env, &path).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_dags(
    State(s): State<AppState>,
    actor: Actor,
    Path((tenant, env)): Path<(String, String)>,
) -> Result<Json<DagFileList>, ApiError> {
    Ok(Json(DagFileList {
        files: s.services.list_dags(&actor, &tenant, &env).await?,
    }))
}
