//! What of an environment's Airflow answer goes back to the caller of the proxy: a few headers,
//! a redirect only when it stays inside the environment, and the body streamed up to the
//! proxy's bound. An environment runs its tenant's code, so its answers are not trusted: a
//! redirect elsewhere is refused rather than passed on or followed (neither the control plane
//! nor the cell's agent follows any), and a body past the bound is cut rather than relayed
//! without end.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use futures::Stream;
use http_body_util::BodyExt;

use super::error::ApiError;
use crate::service::airflow::AirflowTarget;
use crate::service::airflow_call::{too_slow, AirflowAnswer};
use crate::service::ServiceError;

/// Response headers passed back (no Set-Cookie: Airflow's own session stays in the platform;
/// Location only as `relocated` allows).
const RETURNED: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CONTENT_DISPOSITION,
];

/// The caller's answer to a request the environment `env` answered with `resp`: its status,
/// the headers in `RETURNED`, a Location if it stays inside the environment, and the body,
/// streamed. Refused (502 naming the environment) when the environment redirects out of
/// itself, or announces a body larger than `limit` bytes; a body that turns out larger while
/// streaming, or does not arrive in time, is cut there, ending the answer with an error.
pub fn answer(
    env: &str,
    method: &Method,
    target: &AirflowTarget,
    limit: u64,
    resp: AirflowAnswer,
) -> Result<Response, ApiError> {
    let status = resp.status;
    let mut headers = HeaderMap::new();
    for name in RETURNED {
        if let Some(v) = resp.headers.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    if let Some(location) = resp.headers.get(header::LOCATION) {
        match relocated(&resp.url, &target.base_url(), location) {
            Some(inside) => {
                headers.insert(header::LOCATION, inside);
            }
            // A redirect out of the environment: refused, so neither the platform nor the
            // caller's browser goes there on the environment's word.
            None if status.is_redirection() => {
                tracing::warn!(
                    env,
                    location = ?location,
                    "refused an environment's redirect out of itself"
                );
                return Err(ServiceError::BadGateway(format!(
                    "environment {env:?} redirected out of itself; the platform neither follows nor passes on such a redirect"
                ))
                .into());
            }
            // Any other answer (a 201's Location, say) keeps its meaning without the header.
            None => {}
        }
    }
    let bodyless = *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if let Some(len) = resp.content_length().filter(|_| !bodyless) {
        if len > limit {
            return Err(too_large(env, limit).into());
        }
    }
    let mut out = Response::new(Body::from_stream(bounded(resp, limit, env.to_owned())));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out.headers_mut().insert(
        header::HeaderName::from_static("x-hangar-environment"),
        HeaderValue::from_str(env).unwrap_or(HeaderValue::from_static("")),
    );
    Ok(out)
}

fn too_large(env: &str, limit: u64) -> ServiceError {
    ServiceError::BadGateway(format!(
        "environment {env:?} answered more than the {limit} bytes the platform passes on"
    ))
}

/// The body of `resp`, chunk by chunk as it arrives, ending with an error once it passes
/// `limit` bytes or its deadline (the caller sees the answer cut short, never a truncated one
/// that looks whole).
fn bounded(
    resp: AirflowAnswer,
    limit: u64,
    env: String,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (deadline, within) = (resp.deadline, resp.within);
    futures::stream::try_unfold((resp.body, 0u64), move |(mut body, seen)| {
        let env = env.clone();
        async move {
            let chunk = loop {
                let frame = tokio::time::timeout_at(deadline, body.frame())
                    .await
                    .map_err(|_| std::io::Error::other(too_slow(&env, within).to_string()))?;
                match frame {
                    None => return Ok(None),
                    Some(frame) => {
                        // Trailers carry no data of the answer's; they are not passed on.
                        if let Ok(data) = frame.map_err(std::io::Error::other)?.into_data() {
                            break data;
                        }
                    }
                }
            };
            let seen = seen.saturating_add(chunk.len() as u64);
            if seen > limit {
                tracing::warn!(
                    env,
                    limit,
                    "cut an answer of an environment's Airflow at the proxy's bound"
                );
                return Err(std::io::Error::other(too_large(&env, limit).to_string()));
            }
            Ok(Some((chunk, (body, seen))))
        }
    })
}

/// A redirect's Location as the caller gets it, if it stays inside the environment: the same
/// origin as the environment's endpoint (`base_url`) and a path under the endpoint's own (its
/// `…/airflow/…`), given as an absolute path so it holds on the control plane's origin and on
/// the environment's UI host alike. `None` for anything else (another host or port, a path of
/// the platform's, credentials in the URL).
pub fn relocated(
    requested: &url::Url,
    base_url: &str,
    location: &HeaderValue,
) -> Option<HeaderValue> {
    let base = url::Url::parse(base_url).ok()?;
    let to = requested.join(location.to_str().ok()?).ok()?;
    let same_origin = to.scheme() == base.scheme()
        && to.host() == base.host()
        && to.port_or_known_default() == base.port_or_known_default();
    let prefix = base.path().trim_end_matches('/');
    let inside = to.path() == prefix
        || to
            .path()
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'));
    if !same_origin || !inside || !to.username().is_empty() || to.password().is_some() {
        return None;
    }
    let mut out = to.path().to_owned();
    if let Some(q) = to.query() {
        out = format!("{out}?{q}");
    }
    if let Some(f) = to.fragment() {
        out = format!("{out}#{f}");
    }
    HeaderValue::from_str(&out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rstest::rstest;

    const BASE: &str = "http://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow";

    #[rstest]
    #[case(
        "/v1/tenants/data/environments/etl/airflow/",
        "/v1/tenants/data/environments/etl/airflow/"
    )]
    #[case(
        "/v1/tenants/data/environments/etl/airflow",
        "/v1/tenants/data/environments/etl/airflow"
    )]
    #[case(
        "http://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow/auth/login?next=%2F",
        "/v1/tenants/data/environments/etl/airflow/auth/login?next=%2F"
    )]
    #[case("login", "/v1/tenants/data/environments/etl/airflow/api/v2/login")]
    #[case(
        "../ui/dags#top",
        "/v1/tenants/data/environments/etl/airflow/api/ui/dags#top"
    )]
    fn passes_on_a_redirect_inside_the_environment(#[case] location: &str, #[case] want: &str) {
        let requested = url::Url::parse(&format!("{BASE}/api/v2/x")).unwrap();
        let got = relocated(&requested, BASE, &HeaderValue::from_str(location).unwrap());
        assert_eq!(got.unwrap().to_str().unwrap(), want, "{location}");
    }

    #[rstest]
    #[case("http://127.0.0.1:20002/v1/tenants/data/environments/etl/airflow/")]
    #[case("http://10.0.0.1:20001/v1/tenants/data/environments/etl/airflow/")]
    #[case("https://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow/")]
    #[case("//evil.test/v1/tenants/data/environments/etl/airflow/")]
    #[case("/v1/tenants/data/environments/ml/airflow/")]
    #[case("/v1/tenants/data/environments/etl/airflow-x")]
    #[case("/v1/tenants/data/environments/etl/airflow/../../ml/airflow/")]
    #[case("/v1/tenants/data/environments/etl/web-login?token=x")]
    #[case("/healthz")]
    #[case("http://u:p@127.0.0.1:20001/v1/tenants/data/environments/etl/airflow/")]
    fn refuses_a_redirect_anywhere_else(#[case] location: &str) {
        let requested = url::Url::parse(&format!("{BASE}/api/v2/x")).unwrap();
        assert_eq!(
            relocated(&requested, BASE, &HeaderValue::from_str(location).unwrap()),
            None,
            "{location}"
        );
    }
}
