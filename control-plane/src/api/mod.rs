//! Hangar's `/v1` REST API: thin handlers (extract → call the service → map the answer), the
//! router with its middleware, and the OpenAPI document generated from the handlers.

pub mod airflow;
pub mod airflow_answer;
pub mod cells;
pub mod cli;
pub mod dags;
pub mod document;
pub mod environments;
pub mod error;
pub mod extract;
pub mod logs;
pub mod ops;
pub mod tenants;
pub mod ui_host;
pub mod web_login;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::Services;

/// Largest request body accepted (environment specs carry a requirements file of up to 64 KiB).
pub const BODY_LIMIT: usize = 256 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub services: Arc<Services>,
    pub metrics: PrometheusHandle,
    pub openapi_json: Arc<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hangar API",
        description = "Self-hosted managed Apache Airflow: tenants, environments and data-plane cells.",
        version = "1"
    ),
    paths(
        logs::task_log,
        dags::list_dags,
        dags::put_dag,
        dags::get_dag,
        dags::delete_dag,
        airflow::proxy_root,
        airflow::proxy,
        airflow::proxy_by_id_root,
        airflow::proxy_by_id
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants", description = "Tenants, their tokens and access keys (platform admin, tenant admin)"),
        (name = "environments", description = "Airflow environments of a tenant"),
        (name = "cells", description = "Data-plane cells: agent registration, assignments, observed state"),
        (name = "airflow", description = "An environment's own Airflow (REST API and UI), through its cell's tunnel"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // The session a web login opens on one environment's Airflow (`…/web-login`).
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::service::web_login::WEB_SESSION_COOKIE,
                "An environment's web session, for its Airflow only",
            ))),
        );
    }
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(tenants::get_tenant, tenants::delete_tenant))
        .routes(routes!(tenants::create_token, tenants::list_tokens))
        .routes(routes!(tenants::revoke_token))
        .routes(routes!(
            tenants::create_access_key,
            tenants::list_access_keys
        ))
        .routes(routes!(tenants::revoke_access_key))
        .routes(routes!(tenants::audit_log))
        .routes(routes!(tenants::create_portal_login_link))
        .routes(routes!(
            environments::create_environment,
            environments::list_environments
        ))
        .routes(routes!(
            environments::get_environment,
            environments::update_environment,
            environments::delete_environment
        ))
        .routes(routes!(environments::hibernate_environment))
        .routes(routes!(environments::wake_environment))
        .routes(routes!(web_login::create_web_login_token))
        .routes(routes!(cli::run_airflow_cli))
        .routes(routes!(logs::environment_logs))
        .routes(routes!(dags::import_errors))
        .routes(routes!(dags::dag_upload_url))
        .routes(routes!(web_login::web_login))
        .routes(routes!(cells::create_cell, cells::list_cells))
        .routes(routes!(cells::register_cell))
        .routes(routes!(cells::assignments))
        .routes(routes!(cells::report_observed))
        .routes(routes!(cells::open_tunnel))
        .routes(routes!(cli::claim_cli_calls))
        .routes(routes!(cli::finish_cli_call))
        .routes(routes!(logs::post_log_lines))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_document))
}

/// The OpenAPI document of the API, as served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_router().split_for_parts().1;
    document::complete(&mut doc);
    doc
}

/// The OpenAPI document as pretty JSON with a trailing newline (the checked-in form).
pub fn openapi_json() -> String {
    let mut doc = serde_json::to_value(openapi()).unwrap_or_default();
    document::spell_links(&mut doc);
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

/// The control plane's routes; with `HANGAR_UI_DOMAIN`, requests for an environment's own UI
/// host go to that environment's Airflow instead (`ui_host`).
pub fn router(state: AppState) -> Router {
    let (router, _) = api_router().split_for_parts();
    let api = router
        .route(
            "/v1/tenants/{tenant}/environments/{env}/airflow/",
            axum::routing::any(airflow::proxy_root),
        )
        .route(
            "/v1/tenants/{tenant}/environments/{env}/airflow/{*path}",
            axum::routing::any(airflow::proxy),
        )
        .route(
            "/v1/environments/{id}/airflow/",
            axum::routing::any(airflow::proxy_by_id_root),
        )
        .route(
            "/v1/environments/{id}/airflow/{*path}",
            axum::routing::any(airflow::proxy_by_id),
        )
        .route(
            "/v1/tenants/{tenant}/environments/{env}/dags/{*path}",
            axum::routing::put(dags::put_dag)
                .get(dags::get_dag)
                .delete(dags::delete_dag)
                .layer(DefaultBodyLimit::max(crate::service::dags::MAX_DAG_FILE)),
        )
        .route(
            "/v1/tenants/{tenant}/environments/{env}/dags",
            axum::routing::get(dags::list_dags),
        )
        .nest("/mwaa", crate::mwaa::routes())
        .merge(crate::portal::routes())
        .merge(crate::mwaa::web_server_routes())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method);
    let api = with_middleware(api, state.clone());
    match state.services.ui_domain.clone() {
        Some(domain) => ui_host::by_host(domain, api, with_middleware(ui_host::routes(), state)),
        None => api,
    }
}

/// An unknown path: 404, as a problem.
async fn no_route(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::NoRoute {
        path: uri.path().to_owned(),
    }
}

/// A known path with a method it does not take: 405, as a problem (axum adds `Allow`, but for
/// a task log, whose path shares the DAG files' route and takes only `GET`).
async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let mut answer =
        axum::response::IntoResponse::into_response(error::ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: uri.path().to_owned(),
        });
    if dags::is_task_log_path(uri.path()) {
        answer.headers_mut().insert(
            axum::http::header::ALLOW,
            axum::http::HeaderValue::from_static(dags::TASK_LOG_ALLOW),
        );
    }
    answer
}

/// Body limit, metrics, tracing and request ids, as every answer gets them.
fn with_middleware(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(track_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(record_response),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// A request's span, named after its route template (`GET /v1/tenants/{tenant}/environments`)
/// with the OpenTelemetry HTTP attributes, joined to the caller's trace when it sends one.
fn request_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {route}", req.method()),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %req.method(),
        http.route = route,
        url.path = req.uri().path(),
        http.response.status_code = tracing::field::Empty,
        request_id,
    );
    crate::telemetry::set_remote_parent(&span, req.headers());
    span
}

/// The answer's status on the request's span; a 5xx marks the span as failed.
fn record_response(resp: &Response, latency: std::time::Duration, span: &tracing::Span) {
    let status = resp.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    tracing::debug!(
        status = status.as_u16(),
        latency_ms = latency.as_millis() as u64,
        "answered"
    );
}

/// Counts requests and their latency by route template (never by raw path, to bound cardinality).
async fn track_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("hangar_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("hangar_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}
