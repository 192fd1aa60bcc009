//! `…/environments/{env}/airflow/{path}`: the environment's own Airflow, its REST API called
//! with Hangar's token (MWAA's InvokeRestApi) and its UI in a browser with a web session cookie
//! (see `web_login`), on the control plane's origin or on the environment's own UI host
//! (`ui_host`). Neither credential reaches Airflow: the platform's login for the environment,
//! with the Airflow role of the caller's Hangar role, is used instead. The environment's
//! Airflow serves under this same path (`[api] base_url`; its reported `api` endpoint includes
//! it), so the UI's own links stay inside the proxy. What comes back is bounded and never
//! followed (`airflow_answer`).

use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use hangar_tenants::api::{webserver_path, Problem};

use super::airflow_answer::answer;
use super::error::ApiError;
use super::extract::ApiPath;
use super::ui_host::UiHost;
use super::AppState;
use crate::auth::Actor;
use crate::service::airflow;
use crate::service::airflow_call::AirflowRequest;
use crate::service::web_login::WEB_SESSION_COOKIE;
use crate::service::ServiceError;

/// Request headers passed on; everything else (hop-by-hop headers, cookies, the caller's
/// Authorization) stays behind.
const FORWARDED: [header::HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::ACCEPT_LANGUAGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
];

/// The caller: a bearer token if one was sent, else the environment's web session cookie
/// (accepted only on the origin it was issued for).
async fn caller(
    s: &AppState,
    bearer: Result<Actor, ApiError>,
    headers: &HeaderMap,
    req: &Forward,
) -> Result<Actor, ApiError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return bearer;
    }
    let Some(session) = cookie(headers, WEB_SESSION_COOKIE) else {
        return bearer;
    };
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(s.services
        .web_session_actor(&req.tenant, &req.env, session, req.on_ui_host, request_id)
        .await?)
}

/// A cookie's value from the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The environment's Airflow (UI start page), through its cell's tunnel.
#[utoipa::path(method(get, post, put, patch, delete), path = "/v1/tenants/{tenant}/environments/{env}/airflow/",
    params(("tenant" = String, Path), ("env" = String, Path)),
    tag = "airflow", security(("bearer" = []), ("session" = [])),
    responses(
        (status = "default", description = "The environment's Airflow answer (its REST API under `api/v2/`, its UI), passed on with its status and its `Content-Type`, `Cache-Control`, `ETag`, `Last-Modified`, `Content-Disposition` and an allowed `Location`"),
        (status = 409, description = "The environment is not running (its phase named)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The environment's Airflow refused the connection", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "It runs but its api-server is not reported yet, its cell is unreachable, or it did not answer within 20 s", body = Problem, content_type = "application/problem+json")))]
pub async fn proxy_root(
    State(s): State<AppState>,
    bearer: Result<Actor, ApiError>,
    ApiPath((tenant, env)): ApiPath<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = Forward {
        tenant,
        env,
        on_ui_host: false,
        path: String::new(),
        query,
        method,
    };
    forward(&s, bearer, req, headers, body).await
}

/// The environment's Airflow, through its cell's tunnel: its REST API (`api/v2/…`, with the
/// caller's role) and its UI. A bearer token or the session cookie of a web login.
#[utoipa::path(method(get, post, put, patch, delete), path = "/v1/tenants/{tenant}/environments/{env}/airflow/{path}",
    params(("tenant" = String, Path), ("env" = String, Path),
        ("path" = String, Path, description = "The path in the environment's Airflow, such as `api/v2/dags`; may hold `/`")),
    tag = "airflow", security(("bearer" = []), ("session" = [])),
    responses(
        (status = "default", description = "The environment's Airflow answer (its REST API under `api/v2/`, its UI), passed on with its status and its `Content-Type`, `Cache-Control`, `ETag`, `Last-Modified`, `Content-Disposition` and an allowed `Location`"),
        (status = 409, description = "The environment is not running (its phase named)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The environment's Airflow refused the connection", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "It runs but its api-server is not reported yet, its cell is unreachable, or it did not answer within 20 s", body = Problem, content_type = "application/problem+json")))]
pub async fn proxy(
    State(s): State<AppState>,
    bearer: Result<Actor, ApiError>,
    ApiPath((tenant, env, path)): ApiPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = Forward {
        tenant,
        env,
        on_ui_host: false,
        path,
        query,
        method,
    };
    forward(&s, bearer, req, headers, body).await
}

/// `/v1/environments/{id}/airflow/{path}`: the Airflow of an environment that took over a
/// prepared one, which serves under this id-named path (its `webserver_url`); the same as
/// `…/environments/{env}/airflow/{path}` of its tenant and name.
#[utoipa::path(method(get, post, put, patch, delete), path = "/v1/environments/{id}/airflow/{path}",
    params(("id" = Uuid, Path, description = "The environment's id"),
        ("path" = String, Path, description = "The path in the environment's Airflow; may hold `/`")),
    tag = "airflow", security(("bearer" = []), ("session" = [])),
    responses(
        (status = "default", description = "The environment's Airflow answer (its REST API under `api/v2/`, its UI), passed on with its status and its `Content-Type`, `Cache-Control`, `ETag`, `Last-Modified`, `Content-Disposition` and an allowed `Location`"),
        (status = 409, description = "The environment is not running (its phase named)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The environment's Airflow refused the connection", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "It runs but its api-server is not reported yet, its cell is unreachable, or it did not answer within 20 s", body = Problem, content_type = "application/problem+json")))]
pub async fn proxy_by_id(
    State(s): State<AppState>,
    bearer: Result<Actor, ApiError>,
    ApiPath((id, path)): ApiPath<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    forward_by_id(&s, bearer, &id, (path, query, method), headers, body).await
}

/// `/v1/environments/{id}/airflow/`: the start page of [`proxy_by_id`]'s UI.
#[utoipa::path(method(get, post, put, patch, delete), path = "/v1/environments/{id}/airflow/",
    params(("id" = Uuid, Path, description = "The environment's id")),
    tag = "airflow", security(("bearer" = []), ("session" = [])),
    responses(
        (status = "default", description = "The environment's Airflow answer (its REST API under `api/v2/`, its UI), passed on with its status and its `Content-Type`, `Cache-Control`, `ETag`, `Last-Modified`, `Content-Disposition` and an allowed `Location`"),
        (status = 409, description = "The environment is not running (its phase named)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The environment's Airflow refused the connection", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "It runs but its api-server is not reported yet, its cell is unreachable, or it did not answer within 20 s", body = Problem, content_type = "application/problem+json")))]
pub async fn proxy_by_id_root(
    State(s): State<AppState>,
    bearer: Result<Actor, ApiError>,
    ApiPath(id): ApiPath<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    forward_by_id(
        &s,
        bearer,
        &id,
        (String::new(), query, method),
        headers,
        body,
    )
    .await
}

/// Passes a request for the environment `id`'s Airflow on as one for its tenant's and name's.
async fn forward_by_id(
    s: &AppState,
    bearer: Result<Actor, ApiError>,
    id: &str,
    (path, query, method): (String, Option<String>, Method),
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (tenant, env) = s.services.airflow_names_by_id(id).await?;
    let req = Forward {
        tenant,
        env,
        on_ui_host: false,
        path,
        query,
        method,
    };
    forward(s, bearer, req, headers, body).await
}

/// The part of a path on a UI host below an environment's Airflow path: its
/// `webserver_path` (`own`) or an id-named one (`/v1/environments/{id}/airflow/`), as the UI's
/// links carry whichever its `[api] base_url` is; any other path is the Airflow path itself.
fn below_airflow_path<'a>(path: &'a str, own: &str) -> &'a str {
    if let Some(tail) = path.strip_prefix(own) {
        return tail;
    }
    if path == own.trim_end_matches('/') {
        return "";
    }
    let by_id = path.strip_prefix("/v1/environments/").and_then(|rest| {
        let (_, rest) = rest.split_once('/')?;
        match rest.strip_prefix("airflow") {
            Some("") => Some(""),
            Some(tail) => tail.strip_prefix('/'),
            None => None,
        }
    });
    by_id.unwrap_or(path)
}

/// Any path on an environment's own UI host: `/{path}` is `…/airflow/{path}`, and so is the
/// environment's own `…/airflow/{path}` (the UI's links carry it, as its `base_url`).
pub async fn ui_proxy(
    State(s): State<AppState>,
    Extension(host): Extension<UiHost>,
    bearer: Result<Actor, ApiError>,
    uri: Uri,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (tenant, env) = (host.tenant.to_string(), host.env.to_string());
    let own = webserver_path(&tenant, &env);
    let tail = below_airflow_path(uri.path(), &own);
    let req = Forward {
        path: tail.to_owned(),
        tenant,
        env,
        on_ui_host: true,
        query: uri.query().map(str::to_owned),
        method,
    };
    forward(&s, bearer, req, headers, body).await
}

/// A request to pass on to an environment's Airflow.
struct Forward {
    tenant: String,
    env: String,
    /// It came in on the environment's own UI host.
    on_ui_host: bool,
    /// Under the environment's Airflow path.
    path: String,
    query: Option<String>,
    method: Method,
}

async fn forward(
    s: &AppState,
    bearer: Result<Actor, ApiError>,
    req: Forward,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller(s, bearer, &headers, &req).await?;
    let Forward {
        tenant,
        env,
        path,
        query,
        method,
        ..
    } = req;
    let mut url_tail = path.trim_start_matches('/').to_owned();
    if let Some(q) = &query {
        url_tail = format!("{url_tail}?{q}");
    }
    let mut passed = HeaderMap::new();
    for name in FORWARDED {
        if let Some(v) = headers.get(&name) {
            passed.insert(name, v.clone());
        }
    }
    for attempt in 0..2 {
        let target = s.services.airflow_target(&actor, &tenant, &env).await?;
        let req = AirflowRequest {
            method: method.clone(),
            tail: url_tail.clone(),
            headers: passed.clone(),
            body: body.clone(),
            within: airflow::ANSWER_WITHIN,
        };
        let resp = s.services.call_airflow(&env, &target, req).await?;
        if resp.status == StatusCode::UNAUTHORIZED && attempt == 0 {
            s.services.forget_airflow_token(&target);
            continue;
        }
        return answer(&env, &method, &target, s.services.proxy_max_response, resp);
    }
    Err(ApiError::Service(ServiceError::Unavailable(format!(
        "environment {env:?} refused the platform's login"
    ))))
}

#[cfg(test)]
mod tests {
    use super::below_airflow_path;

    #[test]
    fn a_ui_host_path_loses_either_airflow_path() {
        let own = "/v1/tenants/data/environments/etl/airflow/";
        for (path, tail) in [
            ("/v1/tenants/data/environments/etl/airflow/dags", "dags"),
            ("/v1/tenants/data/environments/etl/airflow", ""),
            (
                "/v1/environments/0123abcd/airflow/api/v2/dags",
                "api/v2/dags",
            ),
            ("/v1/environments/0123abcd/airflow", ""),
            (
                "/v1/environments/0123abcd/airflowx",
                "/v1/environments/0123abcd/airflowx",
            ),
            ("/dags/x", "/dags/x"),
            ("/", "/"),
        ] {
            assert_eq!(below_airflow_path(path, own), tail, "{path}");
        }
    }
}
