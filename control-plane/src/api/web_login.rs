//! Opening an environment's Airflow UI in a browser: a web login token (asked for with a Hangar
//! token) is exchanged, once, at `…/web-login` for a session cookie, and the browser is sent on
//! to the UI. On the environment's own UI host (`ui_host`) the cookie is that host's alone; on
//! the control plane's origin it is scoped to the environment's Airflow path.

use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hangar_tenants::api::{Problem, WebLoginToken};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::ui_host::UiHost;
use super::AppState;
use crate::auth::Actor;
use crate::service::web_login::{web_login_path, WEB_SESSION_COOKIE, WEB_SESSION_TTL_SECS};
use crate::service::ServiceError;

/// A web login token for the environment's Airflow UI (MWAA's CreateWebLoginToken). Open its
/// `login_url` in a browser within a minute, once; the session lasts 12 hours with the rights of
/// the token that asked for it (as Airflow roles: viewers read, editors and admins may also
/// trigger and change).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/environments/{env}/web-login-token",
    tag = "environments", security(("bearer" = [])),
    params(("tenant" = String, Path), ("env" = String, Path)),
    responses(
        (status = 200, body = WebLoginToken),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn create_web_login_token(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, env)): ApiPath<(String, String)>,
) -> Result<Json<WebLoginToken>, ApiError> {
    Ok(Json(
        s.services.create_web_login(&actor, &tenant, &env).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WebLoginQuery {
    /// The `web_token` of a web login token.
    token: String,
}

/// Exchanges a web login token, once, for a session cookie (HttpOnly, SameSite=Lax, Secure
/// over https, scoped to the environment's Airflow path) and redirects the browser to the
/// Airflow UI. When the environment has a UI origin of its own (`HANGAR_UI_DOMAIN`), the
/// browser is sent to this same URL there instead, and the session is that origin's.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/environments/{env}/web-login",
    tag = "environments",
    params(("tenant" = String, Path), ("env" = String, Path), WebLoginQuery),
    responses(
        (status = 303, description = "Session cookie set; on to the Airflow UI (or to the environment's own UI origin, to log in there)",
            headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn web_login(
    State(s): State<AppState>,
    ApiPath((tenant, env)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<WebLoginQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(origin) = s.services.ui_origin(&tenant, &env) {
        let token: String = url::form_urlencoded::byte_serialize(q.token.as_bytes()).collect();
        let there = format!("{origin}{}?token={token}", web_login_path(&tenant, &env));
        return Ok(see_other(&there, None));
    }
    let session = s
        .services
        .open_web_login(&tenant, &env, &q.token, false)
        .await?;
    let ui = s.services.airflow_path_of(&tenant, &env).await?;
    let cookie = session_cookie(&session, &ui, https(&headers, false));
    Ok(see_other(&ui, Some(cookie)))
}

/// `…/web-login` on the environment's own UI host: the session cookie is that host's alone
/// (no `Domain`, `Path=/`), so a browser sends it to no other environment's host.
pub async fn web_login_on_ui_host(
    State(s): State<AppState>,
    Extension(host): Extension<UiHost>,
    ApiPath((tenant, env)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<WebLoginQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if tenant != host.tenant.as_str() || env != host.env.as_str() {
        return Err(ServiceError::not_found("environment", env).into());
    }
    let session = s
        .services
        .open_web_login(&tenant, &env, &q.token, true)
        .await?;
    let secure = https(
        &headers,
        s.services.ui_domain.as_ref().is_some_and(|d| d.https),
    );
    Ok(see_other("/", Some(session_cookie(&session, "/", secure))))
}

/// Whether the browser reached Hangar over https: a TLS proxy in front says so with
/// `X-Forwarded-Proto`, or the UI domain was configured as `https://…`.
pub(crate) fn https(headers: &HeaderMap, configured: bool) -> bool {
    configured
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// The session cookie: host-only (never a `Domain`), HttpOnly, SameSite=Lax, Secure over https.
fn session_cookie(session: &str, path: &str, secure: bool) -> String {
    let mut c = format!(
        "{WEB_SESSION_COOKIE}={session}; Path={path}; Max-Age={WEB_SESSION_TTL_SECS}; HttpOnly; SameSite=Lax"
    );
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// A 303 to `location`, setting `cookie` if given; never cached.
pub(crate) fn see_other(location: &str, cookie: Option<String>) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let cookie = cookie.map(|c| (header::SET_COOKIE, c));
    for (name, value) in std::iter::once((header::LOCATION, location.to_owned())).chain(cookie) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
