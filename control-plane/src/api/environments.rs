//! Handlers for a tenant's environments. Every answer carrying an environment has its revision
//! as `ETag`; `PATCH` honours `If-Match`, `POST` honours `Idempotency-Key`.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hangar_tenants::api::{
    CreateEnvironment, Environment, EnvironmentList, Problem, UpdateEnvironment,
};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::extract::{idempotency_key, if_match, ApiJson, ApiJsonRaw, ApiPath};
use super::AppState;
use crate::auth::Actor;
use crate::service::environments::Idempotency;

fn with_etag(status: StatusCode, env: Environment) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", env.revision)).ok();
    let mut resp = (status, Json(env)).into_response();
    if let Some(etag) = etag {
        resp.headers_mut().insert(header::ETAG, etag);
    }
    resp
}

/// Creates an environment. With `Idempotency-Key`, a retry of the same request returns the
/// environment the first one created (header `Idempotent-Replayed: true`) and creates nothing.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/environments", tag = "environments",
    request_body = CreateEnvironment, security(("bearer" = [])),
    params(("tenant" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: same key and body, same environment")),
    responses(
        (status = 201, body = Environment, headers(("ETag" = String), ("Location" = String))),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_environment(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(tenant): ApiPath<String>,
    headers: HeaderMap,
    ApiJsonRaw(req, raw): ApiJsonRaw<CreateEnvironment>,
) -> Result<Response, ApiError> {
    let idempotency = idempotency_key(&headers)?.map(|key| Idempotency {
        key,
        request_hash: Sha256::digest(&raw).to_vec(),
    });
    let created = s
        .services
        .create_environment(&actor, &tenant, req, idempotency)
        .await?;
    let location = format!(
        "/v1/tenants/{}/environments/{}",
        created.environment.tenant, created.environment.name
    );
    let mut resp = with_etag(StatusCode::CREATED, created.environment);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if created.replayed {
        resp.headers_mut().insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(resp)
}

/// The tenant's environments that are not deleted.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/environments", tag = "environments",
    security(("bearer" = [])), params(("tenant" = String, Path)),
    responses((status = 200, body = EnvironmentList)))]
pub async fn list_environments(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<EnvironmentList>, ApiError> {
    Ok(Json(EnvironmentList {
        environments: s.services.list_environments(&actor, &tenant).await?,
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/environments/{env}", tag = "environments",
    security(("bearer" = [])), params(("tenant" = String, Path), ("env" = String, Path)),
    responses((status = 200, body = Environment, headers(("ETag" = String))),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_environment(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, env)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let env = s.services.get_environment(&actor, &tenant, &env).await?;
    Ok(with_etag(StatusCode::OK, env))
}

/// Changes an environment as its next revision. Absent fields keep their value; maps given
/// replace the old ones. `If-Match: "<revision>"` makes it conditional (412 when stale).
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/environments/{env}", tag = "environments",
    request_body = UpdateEnvironment, security(("bearer" = [])),
    params(("tenant" = String, Path), ("env" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The ETag (revision) the change is based on")),
    responses((status = 200, body = Environment, headers(("ETag" = String))),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn update_environment(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, env)): ApiPath<(String, String)>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<UpdateEnvironment>,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let env = s
        .services
        .update_environment(&actor, &tenant, &env, req, expected)
        .await?;
    Ok(with_etag(StatusCode::OK, env))
}

/// Hibernates an environment: `HIBERNATING` until no DAG run is queued or running and its cell
/// has stopped every process, then `HIBERNATED` (its database, files and secrets kept). A
/// wake, or any use through Hangar (its Airflow API or UI, its CLI), starts it again.
/// Editors and admins.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/environments/{env}/hibernate", tag = "environments",
    security(("bearer" = [])), params(("tenant" = String, Path), ("env" = String, Path)),
    responses((status = 202, body = Environment),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn hibernate_environment(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, env)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let env = s
        .services
        .hibernate_environment(&actor, &tenant, &env)
        .await?;
    Ok(with_etag(StatusCode::ACCEPTED, env))
}

/// Wakes a hibernated environment: its cell starts it again (`AVAILABLE` once its Airflow
/// answers). Editors and admins.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/environments/{env}/wake", tag = "environments",
    security(("bearer" = [])), params(("tenant" = String, Path), ("env" = String, Path)),
    responses((status = 202, body = Environment),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn wake_environment(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, env)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let env = s.services.wake_environment(&actor, &tenant, &env).await?;
    Ok(with_etag(StatusCode::ACCEPTED, env))
}

/// Deletes an environment: `DELETING` until its cell has removed everything, then `DELETED`.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/environments/{env}", tag = "environments",
    security(("bearer" = [])), params(("tenant" = String, Path), ("env" = String, Path)),
    responses((status = 202, body = Environment), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_environment(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, env)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let env = s.services.delete_environment(&actor, &tenant, &env).await?;
    Ok(with_etag(StatusCode::ACCEPTED, env))
}
