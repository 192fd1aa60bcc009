//! Each environment's own UI host (`{env}--{tenant}.{HANGAR_UI_DOMAIN}`, `crate::ui_domain`):
//! a request whose `Host` names one goes to that environment's Airflow, whatever its path, and
//! to nothing else of the platform; only its web login is answered by Hangar itself. Requests
//! for any other host reach the API as before.

use axum::extract::Request;
use axum::http::header;
use axum::routing::{any, get};
use axum::Router;
use hangar_tenants::{EnvName, TenantName};
use tower::ServiceExt;

use super::{airflow, web_login, AppState};
use crate::ui_domain::UiDomain;

/// The environment whose UI host a request came in on.
#[derive(Debug, Clone)]
pub struct UiHost {
    pub tenant: TenantName,
    pub env: EnvName,
}

/// The routes of a UI host: its web login, and everything else to the environment's Airflow.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/environments/{env}/web-login",
            get(web_login::web_login_on_ui_host),
        )
        .route("/", any(airflow::ui_proxy))
        .route("/{*path}", any(airflow::ui_proxy))
}

/// Sends a request to `ui` when its `Host` is an environment's UI host (marked with
/// [`UiHost`]), else to `api`.
pub fn by_host(domain: UiDomain, api: Router, ui: Router) -> Router {
    Router::new().fallback_service(tower::service_fn(move |mut req: Request| {
        let names = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| domain.env_of_host(h));
        let to = match names {
            Some((tenant, env)) => {
                req.extensions_mut().insert(UiHost { tenant, env });
                ui.clone()
            }
            None => api.clone(),
        };
        to.oneshot(req)
    }))
}
