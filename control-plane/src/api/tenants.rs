//! Handlers for tenants, tenant tokens and the audit log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hangar_tenants::api::{
    AccessKeyCreated, AccessKeyList, AuditLog, CreateAccessKey, CreateTenant, CreateToken,
    PortalLoginLink, Problem, Tenant, TenantList, TokenCreated, TokenList,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::auth::Actor;

/// Creates a tenant (platform admin only).
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    security(("bearer" = [])),
    responses(
        (status = 201, body = Tenant),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_tenant(
    State(s): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.services.create_tenant(&actor, req).await?),
    ))
}

/// Lists all tenants (platform admin only).
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", security(("bearer" = [])),
    responses((status = 200, body = TenantList)))]
pub async fn list_tenants(
    State(s): State<AppState>,
    actor: Actor,
) -> Result<Json<TenantList>, ApiError> {
    Ok(Json(TenantList {
        tenants: s.services.list_tenants(&actor).await?,
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants", security(("bearer" = [])),
    params(("tenant" = String, Path)),
    responses((status = 200, body = Tenant), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_tenant(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(s.services.get_tenant(&actor, &tenant).await?))
}

/// Deletes a tenant (platform admin only) once it has no environment left, with its tokens,
/// access keys and audit log.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants", security(("bearer" = [])),
    params(("tenant" = String, Path)),
    responses((status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_tenant(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(tenant): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.services.delete_tenant(&actor, &tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates a token for the tenant; the secret is in this answer only.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens", tag = "tenants", request_body = CreateToken,
    security(("bearer" = [])), params(("tenant" = String, Path)),
    responses((status = 201, body = TokenCreated), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_token(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.services.create_token(&actor, &tenant, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/tokens", tag = "tenants", security(("bearer" = [])),
    params(("tenant" = String, Path)), responses((status = 200, body = TokenList)))]
pub async fn list_tokens(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(TokenList {
        tokens: s.services.list_tokens(&actor, &tenant).await?,
    }))
}

/// Revokes a token: it stops working at once.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/tokens/{token_id}", tag = "tenants",
    security(("bearer" = [])), params(("tenant" = String, Path), ("token_id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_token(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, token_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.services.revoke_token(&actor, &tenant, &token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates an access key for the MWAA-compatible API (AWS Signature V4); the secret is in this
/// answer only.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/access-keys", tag = "tenants", request_body = CreateAccessKey,
    security(("bearer" = [])), params(("tenant" = String, Path)),
    responses((status = 201, body = AccessKeyCreated), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_access_key(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<CreateAccessKey>,
) -> Result<(StatusCode, Json<AccessKeyCreated>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.services.create_access_key(&actor, &tenant, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/access-keys", tag = "tenants", security(("bearer" = [])),
    params(("tenant" = String, Path)), responses((status = 200, body = AccessKeyList)))]
pub async fn list_access_keys(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<AccessKeyList>, ApiError> {
    Ok(Json(AccessKeyList {
        access_keys: s.services.list_access_keys(&actor, &tenant).await?,
    }))
}

/// Revokes an access key (by its id or its access key id): it stops working at once.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/access-keys/{key}", tag = "tenants",
    security(("bearer" = [])), params(("tenant" = String, Path), ("key" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_access_key(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, key)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.services.revoke_access_key(&actor, &tenant, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only entries older than this id (for paging).
    pub before: Option<i64>,
    /// At most this many entries (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The tenant's audit log, newest first: every mutation with actor, action, target, request id.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/audit", tag = "tenants", security(("bearer" = [])),
    params(("tenant" = String, Path), AuditQuery), responses((status = 200, body = AuditLog)))]
pub async fn audit_log(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditLog>, ApiError> {
    Ok(Json(AuditLog {
        entries: s
            .services
            .audit_log(&actor, &tenant, q.before, q.limit)
            .await?,
    }))
}

/// A one-time link that signs a browser in to the portal with the caller's own rights, landing
/// on the tenant's page (`hangar portal-login`). It works once, within five minutes.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/portal-login-link", tag = "tenants",
    security(("bearer" = [])), params(("tenant" = String, Path)),
    responses(
        (status = 201, body = PortalLoginLink),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn create_portal_login_link(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(tenant): ApiPath<String>,
) -> Result<(StatusCode, Json<PortalLoginLink>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.services.create_portal_link(&actor, &tenant).await?),
    ))
}
