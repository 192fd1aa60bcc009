//! Pages for admins: a tenant's tokens (created and shown once, revoked) and audit log for its
//! admins; tenants and cells with their shared worker pools for the platform admin.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use hangar_tenants::api::{CreateTenant, CreateToken, Role, TokenCreated};
use hangar_tenants::FieldError;
use serde::Deserialize;
use serde_json::json;

use super::error::PortalError;
use super::form::{errors_by_field, Form};
use super::session::Session;
use super::templates::{page_context, render};
use crate::api::error::ApiError;
use crate::api::web_login::see_other;
use crate::api::AppState;
use crate::service::ServiceError;

/// The field errors of a refused request, if it was refused for its input.
fn input_errors(e: ServiceError) -> Result<Vec<FieldError>, PortalError> {
    match e {
        e @ (ServiceError::Invalid(_) | ServiceError::Conflict { .. }) => {
            let p = ApiError::Service(e).to_problem();
            Ok(if p.errors.is_empty() {
                vec![FieldError::new("form", p.detail)]
            } else {
                p.errors
            })
        }
        e => Err(e.into()),
    }
}

fn field_errors(errors: &[FieldError]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for e in errors {
        out.entry(e.field.clone())
            .or_default()
            .push(e.message.clone());
    }
    out
}

async fn tokens_page(
    s: &AppState,
    session: &Session,
    tenant: &str,
    created: Option<TokenCreated>,
    errors: &[FieldError],
) -> Result<Response, PortalError> {
    let tokens = s.services.list_tokens(&session.actor, tenant).await?;
    let mut ctx = page_context(session, Some(tenant), &format!("{tenant}: tokens"));
    ctx.insert("tokens", &tokens);
    ctx.insert("created", &created);
    ctx.insert("errors", &field_errors(errors));
    let mut resp = super::html(render("tokens.html", &ctx)?);
    if !errors.is_empty() {
        *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(resp)
}

/// `GET /tenants/{t}/tokens` (tenant admins).
pub async fn tokens(
    State(s): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
) -> Result<Response, PortalError> {
    tokens_page(&s, &session, &tenant, None, &[]).await
}

/// `POST /tenants/{t}/tokens` (`name`, `role`): the new token is shown on the answer, once.
pub async fn create_token(
    State(s): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    form: Form,
) -> Result<Response, PortalError> {
    form.check_csrf(&session)?;
    let role = match form.text("role").and_then(Role::parse) {
        Some(r) => r,
        None => {
            let e = FieldError::new("role", "must be viewer, editor or admin");
            return tokens_page(&s, &session, &tenant, None, &[e]).await;
        }
    };
    let req = CreateToken {
        name: form.text("name").unwrap_or_default().to_owned(),
        role,
    };
    match s.services.create_token(&session.actor, &tenant, req).await {
        Ok(created) => tokens_page(&s, &session, &tenant, Some(created), &[]).await,
        Err(e) => {
            let errors = input_errors(e)?;
            tokens_page(&s, &session, &tenant, None, &errors).await
        }
    }
}

/// `POST /tenants/{t}/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
    form: Form,
) -> Result<Response, PortalError> {
    form.check_csrf(&session)?;
    s.services
        .revoke_token(&session.actor, &tenant, &id)
        .await?;
    Ok(see_other(&format!("/tenants/{tenant}/tokens"), None))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

/// `GET /tenants/{t}/audit` (tenant admins): newest first, 100 a page.
pub async fn audit(
    State(s): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PortalError> {
    let entries = s
        .services
        .audit_log(&session.actor, &tenant, q.before, Some(100))
        .await?;
    let mut ctx = page_context(&session, Some(&tenant), &format!("{tenant}: audit log"));
    ctx.insert(
        "entries",
        &entries
            .iter()
            .map(|e| {
                json!({
                    "at": e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    "actor": e.actor,
                    "action": e.action,
                    "target": e.target,
                    "details": e.details.to_string(),
                })
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "older",
        &(entries.len() == 100).then(|| entries.last().map(|e| e.id)),
    );
    Ok(super::html(render("audit.html", &ctx)?))
}

async fn admin_page(
    s: &AppState,
    session: &Session,
    errors: &[FieldError],
    values: serde_json::Value,
) -> Result<Response, PortalError> {
    let tenants = s.services.list_tenants(&session.actor).await?;
    let cells = s.services.list_cells(&session.actor).await?;
    let usage = s
        .services
        .usage(
            &session.actor,
            chrono::Utc::now(),
            chrono::Duration::hours(24),
        )
        .await?;
    let mut ctx = page_context(session, None, "Platform");
    ctx.insert("tenants", &tenants);
    ctx.insert(
        "cells",
        &cells
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "runtime": c.runtime,
                    "environments": c.environments,
                    "slots": c.pool.worker_slots,
                    "held": c.pool.workers,
                    "utilization_pct": (c.pool.utilization * 100.0).round(),
                    "last_seen_at": c.last_seen_at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
                    "isolated": c.isolation.as_ref().is_some_and(|i| i.isolated),
                })
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert("utilization_chart", &super::chart::utilization_svg(&usage));
    ctx.insert(
        "worker_hours_chart",
        &super::chart::worker_hours_svg(&usage),
    );
    ctx.insert("errors", &errors_by_field(errors));
    ctx.insert("values", &values);
    let mut resp = super::html(render("admin.html", &ctx)?);
    if !errors.is_empty() {
        *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(resp)
}

/// `GET /admin` (the platform admin): tenants and cells.
pub async fn admin(State(s): State<AppState>, session: Session) -> Result<Response, PortalError> {
    admin_page(&s, &session, &[], json!({})).await
}

/// `POST /admin/tenants` (`name`, `display_name`).
pub async fn create_tenant(
    State(s): State<AppState>,
    session: Session,
    form: Form,
) -> Result<Response, PortalError> {
    form.check_csrf(&session)?;
    let req = CreateTenant {
        name: form.text("name").unwrap_or_default().to_owned(),
        display_name: form.text("display_name").map(str::to_owned),
    };
    match s.services.create_tenant(&session.actor, req).await {
        Ok(t) => Ok(see_other(&format!("/tenants/{}", t.name), None)),
        Err(e) => {
            let errors = input_errors(e)?;
            admin_page(&s, &session, &errors, json!(form.values())).await
        }
    }
}
