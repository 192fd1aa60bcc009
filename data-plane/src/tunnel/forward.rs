//! What the agent does with one request the control plane sends over the cell's tunnel: find
//! the environment it names among the cell's own, check that its path stays under that
//! environment's Airflow path, and pass it to that environment's api-server only (the address
//! the agent itself gave it, never one from the request), without following redirects. The
//! answer streams back as it comes; a Location on the environment's own origin is turned into
//! an absolute path, so the control plane never needs to know where environments listen.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use hangar_tenants::tunnel::{Refusal, ENVIRONMENT_HEADER, REFUSED_HEADER};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use url::Url;
use uuid::Uuid;

/// An error of a body relayed over the tunnel.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of an answer over the tunnel.
pub type TunnelBody = BoxBody<Bytes, BoxError>;

/// The largest request body passed on. The control plane sends far less (its own request
/// limit); this only keeps the agent from buffering without end.
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Headers that belong to one hop (RFC 9110 §7.6.1) or that the forwarding sets itself: never
/// passed on in either direction.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Where each environment of the cell answers: its api-server's base URL (scheme, loopback
/// address and port, and its own Airflow path), as the environment's runtime set it up. The
/// agent's reconcilers keep it current; the tunnel reads it for every request.
#[derive(Debug, Clone, Default)]
pub struct TunnelEnvironments(Arc<RwLock<HashMap<Uuid, Url>>>);

impl TunnelEnvironments {
    /// Records where `env`'s api-server answers (`http://127.0.0.1:<port>/v1/tenants/…/airflow`).
    pub fn set(&self, env: Uuid, base: &str) {
        let Ok(url) = Url::parse(base) else {
            tracing::warn!(%env, base, "not an environment address the tunnel can use");
            return;
        };
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if map.get(&env) != Some(&url) {
            map.insert(env, url);
        }
    }

    /// Forgets a deleted environment: requests for it are refused from now on.
    pub fn remove(&self, env: Uuid) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&env);
    }

    fn base(&self, env: Uuid) -> Option<Url> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&env)
            .cloned()
    }
}

/// Passes the tunnel's requests on to the cell's environments.
#[derive(Debug, Clone)]
pub struct Forwarder {
    envs: TunnelEnvironments,
    http: reqwest::Client,
}

impl Forwarder {
    /// A forwarder to `envs`, with an HTTP client that follows no redirect and uses no proxy
    /// (an `HTTP_PROXY` of the agent's must not see the environments' traffic).
    #[allow(
        clippy::expect_used,
        reason = "as reqwest::Client::new(): fails only when no TLS backend can start"
    )]
    pub fn new(envs: TunnelEnvironments) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("an HTTP client");
        Self { envs, http }
    }

    /// The answer to one request over the tunnel: the environment's, or the agent's refusal.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<TunnelBody> {
        let env = req
            .headers()
            .get(ENVIRONMENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Uuid::parse_str(v).ok());
        let Some((env, base)) = env.and_then(|id| Some((id, self.envs.base(id)?))) else {
            return refused(
                Refusal::UnknownEnvironment,
                "this cell's agent runs no such environment".to_owned(),
            );
        };
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let Some(url) = target_url(&base, path) else {
            tracing::warn!(%env, path, "refused a tunnel request outside its environment's path");
            return refused(
                Refusal::OutsideEnvironment,
                "the path is not under the environment's own Airflow path".to_owned(),
            );
        };
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return refused(
                    Refusal::Unanswered,
                    format!("failed to read the request: {e}"),
                )
            }
        };
        let sent = self
            .http
            .request(parts.method, url.clone())
            .headers(passed_on(&parts.headers))
            .body(body)
            .send()
            .await;
        match sent {
            Ok(resp) => answer(&base, &url, resp),
            Err(e) if e.is_connect() => refused(
                Refusal::ConnectionRefused,
                "its api-server refused the connection".to_owned(),
            ),
            Err(e) => refused(Refusal::Unanswered, innermost(e)),
        }
    }
}

/// The environment's answer as it goes back: status, headers but hop-by-hop ones (and a
/// refusal header it may have set itself), its Location made relative to its own origin, and
/// the body streamed.
fn answer(base: &Url, requested: &Url, resp: reqwest::Response) -> Response<TunnelBody> {
    let resp: Response<reqwest::Body> = resp.into();
    let (mut parts, body) = resp.into_parts();
    parts.headers = passed_on(&parts.headers);
    parts.headers.remove(REFUSED_HEADER);
    if let Some(location) = parts.headers.get(header::LOCATION).cloned() {
        let relocated = location
            .to_str()
            .ok()
            .map(|l| relocate(base, requested, l))
            .and_then(|l| HeaderValue::from_str(&l).ok());
        match relocated {
            Some(l) => parts.headers.insert(header::LOCATION, l),
            None => parts.headers.remove(header::LOCATION),
        };
    }
    Response::from_parts(parts, body.map_err(BoxError::from).boxed())
}

/// The agent's own refusal of a request, which the control plane tells apart from any answer
/// of the environment by [`REFUSED_HEADER`].
fn refused(why: Refusal, message: String) -> Response<TunnelBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(message))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = StatusCode::from_u16(why.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = resp.headers_mut();
    headers.insert(REFUSED_HEADER, HeaderValue::from_static(why.as_str()));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The innermost cause of a failed exchange: what went wrong, without the environment's
/// address (which the outer errors name).
fn innermost(e: reqwest::Error) -> String {
    let mut inner = None;
    let mut cause: &dyn std::error::Error = &e;
    while let Some(next) = cause.source() {
        inner = Some(next.to_string());
        cause = next;
    }
    inner.unwrap_or_else(|| e.without_url().to_string())
}

/// Every header but the hop-by-hop ones, `Host` (the client sets the environment's own),
/// `Content-Length` (set from the body) and the tunnel's own.
fn passed_on(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let dropped = HOP_BY_HOP.contains(&name.as_str())
            || *name == header::HOST
            || *name == header::CONTENT_LENGTH
            || name.as_str() == ENVIRONMENT_HEADER;
        if !dropped {
            out.append(HeaderName::clone(name), value.clone());
        }
    }
    out
}

/// The environment's URL for a request's path and query, if the path is the environment's own
/// Airflow path or under it, and has no `.`/`..` segment (spelled out or percent-encoded) nor
/// a backslash that could take it elsewhere once the api-server normalises it.
pub(crate) fn target_url(base: &Url, path_and_query: &str) -> Option<Url> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let own = base.path().trim_end_matches('/');
    let inside = path == own
        || path
            .strip_prefix(own)
            .is_some_and(|rest| rest.starts_with('/'));
    let dotted = path.split('/').any(|segment| {
        let s = segment.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    });
    let slashed = path.contains('\\') || path.to_ascii_lowercase().contains("%5c");
    if !inside || dotted || slashed {
        return None;
    }
    let mut url = base.clone();
    url.set_path(path);
    url.set_query(query);
    url.set_fragment(None);
    let still_inside = url.path() == own
        || url
            .path()
            .strip_prefix(own)
            .is_some_and(|rest| rest.starts_with('/'));
    still_inside.then_some(url)
}

/// A Location the environment answered `requested` with, as the control plane gets it: on the
/// environment's own origin, the absolute path (with query and fragment); anywhere else, as it
/// was (for the control plane to refuse).
pub(crate) fn relocate(base: &Url, requested: &Url, location: &str) -> String {
    let Ok(to) = requested.join(location) else {
        return location.to_owned();
    };
    let same_origin = to.scheme() == base.scheme()
        && to.host() == base.host()
        && to.port_or_known_default() == base.port_or_known_default()
        && to.username().is_empty()
        && to.password().is_none();
    if !same_origin {
        return location.to_owned();
    }
    let mut out = to.path().to_owned();
    if let Some(q) = to.query() {
        out = format!("{out}?{q}");
    }
    if let Some(f) = to.fragment() {
        out = format!("{out}#{f}");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rstest::rstest;

    const BASE: &str = "http://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow";

    #[rstest]
    #[case(
        "/v1/tenants/data/environments/etl/airflow",
        "http://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow"
    )]
    #[case(
        "/v1/tenants/data/environments/etl/airflow/",
        "http://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow/"
    )]
    #[case(
        "/v1/tenants/data/environments/etl/airflow/api/v2/dags?limit=2&x=%2F",
        "http://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow/api/v2/dags?limit=2&x=%2F"
    )]
    #[case(
        "/v1/tenants/data/environments/etl/airflow/static/a..b.js",
        "http://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow/static/a..b.js"
    )]
    fn forwards_paths_under_the_environments_own(#[case] path: &str, #[case] want: &str) {
        let base = Url::parse(BASE).unwrap();
        assert_eq!(target_url(&base, path).unwrap().as_str(), want);
    }

    #[rstest]
    #[case("/")]
    #[case("/healthz")]
    #[case("/v1/tenants/data/environments/ml/airflow/api/v2/dags")]
    #[case("/v1/tenants/data/environments/etl/airflow-x")]
    #[case("/v1/tenants/data/environments/etl/airflow/../../ml/airflow")]
    #[case("/v1/tenants/data/environments/etl/airflow/%2e%2E/x")]
    #[case("/v1/tenants/data/environments/etl/airflow/./x")]
    #[case("/v1/tenants/data/environments/etl/airflow/..%5c..%5cml")]
    #[case("/v1/tenants/data/environments/etl/airflow/a\\b")]
    #[case("//evil.test/v1/tenants/data/environments/etl/airflow")]
    #[case("http://10.0.0.1:80/v1/tenants/data/environments/etl/airflow")]
    fn refuses_any_other_path(#[case] path: &str) {
        let base = Url::parse(BASE).unwrap();
        assert_eq!(target_url(&base, path), None, "{path}");
    }

    #[rstest]
    #[case(
        "http://127.0.0.1:20001/v1/tenants/data/environments/etl/airflow/auth/login?next=%2F",
        "/v1/tenants/data/environments/etl/airflow/auth/login?next=%2F"
    )]
    #[case("login", "/v1/tenants/data/environments/etl/airflow/api/v2/login")]
    #[case(
        "/v1/tenants/data/environments/etl/airflow/#top",
        "/v1/tenants/data/environments/etl/airflow/#top"
    )]
    // Elsewhere: left as it is, for the control plane to refuse.
    #[case(
        "http://127.0.0.1:20002/v1/tenants/data/environments/etl/airflow/",
        "http://127.0.0.1:20002/v1/tenants/data/environments/etl/airflow/"
    )]
    #[case("https://evil.test/", "https://evil.test/")]
    #[case(
        "http://u:p@127.0.0.1:20001/v1/tenants/data/environments/etl/airflow/",
        "http://u:p@127.0.0.1:20001/v1/tenants/data/environments/etl/airflow/"
    )]
    fn makes_a_location_on_the_environments_origin_a_path(
        #[case] location: &str,
        #[case] want: &str,
    ) {
        let base = Url::parse(BASE).unwrap();
        let requested = Url::parse(&format!("{BASE}/api/v2/x")).unwrap();
        assert_eq!(relocate(&base, &requested, location), want);
    }

    #[test]
    fn hop_by_hop_and_tunnel_headers_stay_behind() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive"),
            ("host", "cell-tunnel.invalid"),
            ("hangar-environment", "x"),
            ("content-length", "3"),
            ("authorization", "Bearer t"),
            ("accept", "application/json"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = passed_on(&h);
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "authorization"]);
    }
}
