//! Handlers for an environment's DAG files (`…/dags/{path}`): the body is the file itself.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hangar_tenants::api::{
    CreateUploadUrl, DagFile, DagFileList, ImportErrorList, Problem, UploadUrl,
};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::auth::Actor;
use crate::service::dags::UploadError;

/// Uploads a DAG file (or any file of the DAG folder: `path` may hold `/`); the body is the
/// file. The environment syncs it within seconds.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/environments/{env}/dags/{path}",
    tag = "environments", security(("bearer" = [])),
    params(("tenant" = String, Path), ("env" = String, Path),
        ("path" = String, Path, description = "The file's path in the DAG folder, such as `etl.py` or `lib/helpers.py`")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's content"),
    responses(
        (status = 201, body = DagFile),
        (status = 405, description = "a task log's path (`<dag>/runs/<run>/tasks/<task>/logs`): read only", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a path that is not a file's in the DAG folder", body = Problem, content_type = "application/problem+json")))]
pub async fn put_dag(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, env, path)): ApiPath<(String, String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    if super::logs::task_log_target(&path).is_some() {
        return Ok(task_log_route("PUT", &path));
    }
    let stream = body.into_data_stream();
    match s
        .services
        .put_dag(&actor, &tenant, &env, &path, stream)
        .await
    {
        Ok(f) => Ok((StatusCode::CREATED, Json(f)).into_response()),
        Err(UploadError::Service(e)) => Err(e.into()),
        Err(UploadError::TooLarge { limit }) => Err(ApiError::TooLarge { limit }),
        Err(UploadError::Body(m)) => Err(ApiError::malformed(m, None)),
    }
}

/// A DAG file's content, or, for `{dag}/runs/{run}/tasks/{task}/logs`, a task log (the two
/// routes share a prefix, see [`super::logs::task_log_target`]).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/environments/{env}/dags/{path}",
    tag = "environments", security(("bearer" = [])),
    params(("tenant" = String, Path), ("env" = String, Path),
        ("path" = String, Path, description = "The file's path in the DAG folder")),
    responses(
        (status = 200, body = Vec<u8>, content_type = "application/octet-stream", description = "The file's content"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn get_dag(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, env, path)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<super::logs::TaskLogQuery>,
) -> Result<Response, ApiError> {
    if let Some((dag, run, task)) = super::logs::task_log_target(&path) {
        return super::logs::task_log(&s, &actor, &tenant, &env, dag, run, task, &q).await;
    }
    let bytes = s.services.get_dag(&actor, &tenant, &env, &path).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// Deletes a DAG file; the environment drops its DAGs within seconds.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/environments/{env}/dags/{path}",
    tag = "environments", security(("bearer" = [])),
    params(("tenant" = String, Path), ("env" = String, Path),
        ("path" = String, Path, description = "The file's path in the DAG folder")),
    responses((status = 204),
        (status = 405, description = "a task log's path (`<dag>/runs/<run>/tasks/<task>/logs`): read only", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_dag(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, env, path)): ApiPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    if super::logs::task_log_target(&path).is_some() {
        return Ok(task_log_route("DELETE", &path));
    }
    s.services.delete_dag(&actor, &tenant, &env, &path).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `…/dags/<dag>/runs/<run>/tasks/<task>/logs` is a task log, read only: a DAG file of that
/// path could not be read back, so it cannot be written or deleted through the API either.
fn task_log_route(method: &str, path: &str) -> Response {
    let mut answer = ApiError::MethodNotAllowed {
        method: method.to_owned(),
        path: format!("dags/{path} (a task log)"),
    }
    .into_response();
    answer.headers_mut().insert(
        header::ALLOW,
        header::HeaderValue::from_static(TASK_LOG_ALLOW),
    );
    answer
}

/// The methods of a task log's path.
pub const TASK_LOG_ALLOW: &str = "GET,HEAD";

/// Whether a request path is a task log's (`/v1/tenants/…/environments/…/dags/<dag>/runs/<run>/tasks/<task>/logs`).
pub fn is_task_log_path(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(7, '/').collect();
    matches!(
        segments[..],
        ["v1", "tenants", _, "environments", _, "dags", rest]
            if super::logs::task_log_target(rest).is_some()
    )
}

/// The files of the environment's DAG folder, as stored in its bucket.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/environments/{env}/dags",
    tag = "environments", security(("bearer" = [])),
    params(("tenant" = String, Path), ("env" = String, Path)),
    responses((status = 200, body = DagFileList),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn list_dags(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, env)): ApiPath<(String, String)>,
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
    ApiPath((tenant, env)): ApiPath<(String, String)>,
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
    ApiPath((tenant, env)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CreateUploadUrl>,
) -> Result<Json<UploadUrl>, ApiError> {
    Ok(Json(
        s.services
            .dag_upload_url(&actor, &tenant, &env, &req.path)
            .await?,
    ))
}
