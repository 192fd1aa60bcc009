//! The tenant self-service portal: server-rendered HTML pages (tera templates compiled into the
//! binary) over the same service functions as the JSON API, so both surfaces share every rule.
//! Every form works as a plain HTML form; the live parts (phases, the log tail) are
//! server-sent events read by a small script that ships inside the binary too.
//!
//! Sessions are server-side (`crate::service::portal`), in an `HttpOnly`, `SameSite=Strict`
//! cookie; every state-changing form carries the session's CSRF token, and a POST without it
//! is refused before anything changes.

mod admin;
mod assets;
mod chart;
mod dags;
pub mod document;
mod environments;
mod error;
mod form;
mod logs;
mod session;
mod templates;

use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::AppState;

pub use error::PortalError;
pub use session::Session;

/// The portal's routes (on the control plane's own origin).
pub fn routes() -> Router<AppState> {
    let env = "/tenants/{tenant}/environments/{env}";
    Router::new()
        .route("/", get(session::home))
        .route("/login", get(session::login_page).post(session::login))
        .route("/login/link", get(session::login_link))
        .route("/logout", post(session::logout))
        .route("/assets/{file}", get(assets::asset))
        .route("/tenants/{tenant}", get(environments::list))
        .route("/tenants/{tenant}/events", get(environments::list_events))
        .route("/tenants/{tenant}/environments", post(environments::create))
        .route(
            "/tenants/{tenant}/environments/new",
            get(environments::new_form),
        )
        .route(env, get(environments::detail).post(environments::update))
        .route(&format!("{env}/events"), get(environments::detail_events))
        .route(
            &format!("{env}/delete"),
            get(environments::delete_page).post(environments::delete),
        )
        .route(
            &format!("{env}/open-airflow"),
            post(environments::open_airflow),
        )
        .route(
            &format!("{env}/dags"),
            get(dags::page)
                .post(dags::upload)
                .layer(dags::upload_limit()),
        )
        .route(&format!("{env}/dags/delete"), post(dags::delete))
        .route(&format!("{env}/hibernate"), post(environments::hibernate))
        .route(&format!("{env}/wake"), post(environments::wake))
        .route(&format!("{env}/logs"), get(logs::page))
        .route(&format!("{env}/logs/events"), get(logs::follow))
        .route(
            &format!("{env}/cli"),
            get(logs::cli_page).post(logs::cli_run),
        )
        .route(
            "/tenants/{tenant}/tokens",
            get(admin::tokens).post(admin::create_token),
        )
        .route(
            "/tenants/{tenant}/tokens/{id}/revoke",
            post(admin::revoke_token),
        )
        .route("/tenants/{tenant}/audit", get(admin::audit))
        .route("/admin", get(admin::admin))
        .route("/admin/tenants", post(admin::create_tenant))
        .layer(axum::middleware::map_response(html_rejections))
}

/// The largest refusal an extractor writes that is turned into a page.
const REJECTION_LIMIT: usize = 16 * 1024;

/// A request an extractor refused before its handler ran (a query string, path or upload form
/// that cannot be read) is answered as every portal error is: an HTML page with the status.
async fn html_rejections(resp: Response) -> Response {
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(plain && resp.status().is_client_error()) {
        return resp;
    }
    let status = resp.status();
    let detail = axum::body::to_bytes(resp.into_body(), REJECTION_LIMIT)
        .await
        .unwrap_or_default();
    error::error_page(
        status,
        status.canonical_reason().unwrap_or("Refused"),
        &String::from_utf8_lossy(&detail),
    )
}

/// The headers every portal page gets: never cached (pages show a session's data), never
/// framed, scripts and styles only from the portal itself.
pub(crate) fn page_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// A rendered page as an answer.
pub(crate) fn html(body: String) -> Response {
    page_headers(Html(body).into_response())
}
