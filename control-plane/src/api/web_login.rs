//! Opening an environment's Airflow UI in a browser: a web login token (asked for with a Hangar
//! token) is exchanged at `…/web-login` for a session cookie scoped to the environment's Airflow
//! path, and the browser is sent on to the UI.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hangar_tenants::api::{webserver_path, Problem, WebLoginToken};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::ApiQuery;
use super::AppState;
use crate::auth::Actor;
use crate::service::web_login::{WEB_SESSION_COOKIE, WEB_SESSION_TTL_SECS};

/// A web login token for the environment's Airflow UI (MWAA's CreateWebLoginToken). Open its
/// `login_url` in a browser within a minute; the session lasts 12 hours with the rights of the
/// token that asked for it (viewers read, editors and admins may also trigger and change).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/environments/{env}/web-login-token",
    tag = "environments", security(("bearer" = [])),
    params(("tenant" = String, Path), ("env" = String, Path)),
    responses(
        (status = 200, body = WebLoginToken),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn create_web_login_token(
    State(s): State<AppState>,
    actor: Actor,
    Path((tenant, env)): Path<(String, String)>,
) -> Result<Json<WebLoginToken>, ApiError> {
    Ok(Json(
        s.services.create_web_login(&actor, &tenant, &env).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WebLoginQuery {
    /// The `web_token` of a web login token.
    token: String,
}

/// Exchanges a web login token for a session cookie (HttpOnly, SameSite=Lax, scoped to the
/// environment's Airflow path) and redirects the browser to the Airflow UI.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/environments/{env}/web-login",
    tag = "environments",
    params(("tenant" = String, Path), ("env" = String, Path), WebLoginQuery),
    responses(
        (status = 303, description = "Session cookie set; on to the Airflow UI",
            headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn web_login(
    State(s): State<AppState>,
    Path((tenant, env)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<WebLoginQuery>,
) -> Result<Response, ApiError> {
    let session = s.services.open_web_login(&tenant, &env, &q.token)?;
    let ui = webserver_path(&tenant, &env);
    let cookie = format!(
        "{WEB_SESSION_COOKIE}={session}; Path={ui}; Max-Age={WEB_SESSION_TTL_SECS}; HttpOnly; SameSite=Lax"
    );
    let mut resp = StatusCode::SEE_OTHER.into_response();
    for (name, value) in [(header::LOCATION, ui), (header::SET_COOKIE, cookie)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
