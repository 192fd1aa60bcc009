//! Handlers for an environment's DAG files (`…/dags/{path}`): the body is the file itself.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hangar_tenants::api::{
    CreateUploadUrl, DagFile, DagFileList, ImportErrorList, Problem, UploadUrl,
};

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use super::AppState;
use crate::auth::Actor;
use crate::service::dags::UploadError;

pub async fn put_dag(
    State(s): State<AppState>,
    actor: Actor,
    Path((tenant, env, path)): Path<(String, String, String)>,
    body: Body,
) -> Result<(StatusCode, Json<DagFile>), ApiError> {
    let stream = body.into_data_stream();
    match s
        .services
        .put_dag(&actor, &tenant, &env, &path, stream)
        .await
    {
        Ok(f) => Ok((StatusCode::CREATED, Json(f))),
        Err(UploadError::Service(e)) => Err(e.into()),
        Err(UploadError::TooLarge { limit }) => Err(ApiError::TooLarge { limit }),
        Err(UploadError::Body(m)) => Err(ApiError::malformed(m, None)),
    }
}

/// A DAG file's content, or, for `{dag}/runs/{run}/tasks/{task}/logs`, a task log (the two
/// routes share a prefix, see [`super::logs::task_log_target`]).
pub async fn get_dag(
    State(s): State<AppState>,
    actor: Actor,
    Path((tenant, env, path)): Path<(String, String, String)>,
    ApiQuery(q): ApiQuery<super::logs::TaskLogQuery>,
) -> Result<Response, ApiError> {
    if let Some((dag, run, task)) = super::logs::task_log_target(&path) {
        return super::logs::task_log(&s, &actor, &tenant, &env, dag, run, task, &q).await;
    }
    let bytes = s.services.get_dag(&actor, &tenant, &env, &path).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
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

/// The environment's DAG import errors (file and message), from its own Airflow.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/environments/{env}/import-errors",
    tag = "environments", security(("bearer" = [])),
    params(("tenant" = String, Path), ("env" = String, Path)),
    responses(
        (status = 200, body = ImportErrorList),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn import_errors(
    State(s): State<AppState>,
    actor: Actor,
    Path((tenant, env)): Path<(String, String)>,
) -> Result<Json<ImportErrorList>, ApiError> {
    Ok(Json(ImportErrorList {
        import_errors: s.services.import_errors(&actor, &tenant, &env).await?,
    }))
}

/// A pre-signed URL that uploads one DAG file straight to the platform bucket with the
/// tenant's own HTTP client (S3, GCS and Azure buckets; 409 for a local-folder bucket). Valid
/// 15 minutes; the upload is synced like any other write to the `dags/` prefix.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/environments/{env}/dag-upload-urls",
    tag = "environments", security(("bearer" = [])),
    params(("tenant" = String, Path), ("env" = String, Path)),
    request_body = CreateUploadUrl,
    responses(
        (status = 200, body = UploadUrl),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn dag_upload_url(
    State(s): State<AppState>,
    actor: Actor,
    Path((tenant, env)): Path<(String, String)>,
    ApiJson(req): ApiJson<CreateUploadUrl>,
) -> Result<Json<UploadUrl>, ApiError> {
    Ok(Json(
        s.services
            .dag_upload_url(&actor, &tenant, &env, &req.path)
            .await?,
    ))
}
