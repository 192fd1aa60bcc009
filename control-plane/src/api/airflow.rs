//! `…/environments/{env}/airflow/{path}`: the environment's own Airflow REST API, called with
//! Hangar's token (MWAA's InvokeRestApi). The caller's token never reaches Airflow; the
//! platform's login for the environment is used instead.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::auth::Actor;
use crate::service::ServiceError;

/// Headers passed on in each direction; everything else (hop-by-hop headers, cookies, the
/// caller's Authorization) stays behind.
const FORWARDED: [header::HeaderName; 3] = [header::CONTENT_TYPE, header::ACCEPT, header::IF_MATCH];

#[allow(clippy::too_many_arguments)]
pub async fn proxy(
    State(s): State<AppState>,
    actor: Actor,
    Path((tenant, env, path)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let write = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let path = path.trim_start_matches('/');
    let mut url_tail = path.to_owned();
    if let Some(q) = &query {
        url_tail = format!("{url_tail}?{q}");
    }
    for attempt in 0..2 {
        let target = s
            .services
            .airflow_target(&actor, &tenant, &env, write)
            .await?;
        let mut rb = s
            .services
            .http()
            .request(method.clone(), format!("{}/{url_tail}", target.base_url))
            .bearer_auth(&target.token)
            .timeout(std::time::Duration::from_secs(60))
            .body(body.clone());
        for name in FORWARDED {
            if let Some(v) = headers.get(&name) {
                rb = rb.header(name, v);
            }
        }
        let resp = rb.send().await.map_err(|e| {
            ApiError::Service(ServiceError::Unavailable(format!(
                "environment {env:?} did not answer: {e}"
            )))
        })?;
        if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
            s.services.forget_airflow_token(target.env_id);
            continue;
        }
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = resp.bytes().await.map_err(|e| {
            ApiError::Service(ServiceError::Unavailable(format!(
                "environment {env:?} broke off its answer: {e}"
            )))
        })?;
        let mut out = (status, bytes).into_response();
        if let Some(ct) = content_type {
            out.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        out.headers_mut().insert(
            header::HeaderName::from_static("x-hangar-environment"),
            HeaderValue::from_str(&env).unwrap_or(HeaderValue::from_static("")),
        );
        return Ok(out);
    }
    Err(ApiError::Service(ServiceError::Unavailable(format!(
        "environment {env:?} refused the platform's login"
    ))))
}
