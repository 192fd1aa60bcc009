//! The relay between control-plane replicas. A cell's agent holds its tunnel open to one
//! replica; a request for that cell's environments reaching another replica is relayed to the
//! one holding the tunnel (found in `cell_tunnels`), which sends it over the tunnel and streams
//! the answer back. Each replica listens for relayed requests on an address of its own
//! (`HANGAR_RELAY_LISTEN`), apart from the API.
//!
//! A relayed request is exactly the request the tunnel carries, already authorized by the
//! replica that took it, so the relay trusts only its peers: each request is signed with a key
//! derived from the master key every replica holds (HMAC-SHA256 over its time, method, cell,
//! URL, environment, platform login and body), and one older than [`MAX_SKEW`] or signed
//! otherwise is refused before anything is sent. The relay sends only to tunnels, never to an
//! address a request names (docs/security.md, "The cell tunnel").

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use hangar_tenants::tunnel::ENVIRONMENT_HEADER;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::tunnel::{TunnelBody, Tunnels};

/// The relayed request's time (Unix seconds) and signature (hex).
pub const TIME_HEADER: &str = "hangar-relay-time";
pub const SIGNATURE_HEADER: &str = "hangar-relay-signature";
/// The URL the request has on the tunnel (the relay's own request line names the relay).
pub const URL_HEADER: &str = "hangar-relay-url";
/// On a relay's answer: the replica holds no tunnel of the cell (any more).
pub const NO_TUNNEL_HEADER: &str = "hangar-relay-no-tunnel";

/// How far a relayed request's time may be from the relay's clock.
pub const MAX_SKEW: i64 = 30;

/// The largest body relayed (the proxy's callers' bodies are read whole and bounded lower).
const MAX_BODY: usize = crate::service::dags::MAX_DAG_FILE;

/// What the relay key is derived for.
const PURPOSE: &str = "hangar control-plane replica relay v1";

/// A replica's side of the relay: its key, and its client to the other replicas' relays.
#[derive(Clone)]
pub struct Relay {
    key: [u8; 32],
    client: Client<HttpConnector, TunnelBody>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Relay(..)")
    }
}

/// Why a relayed request was not answered by the replica holding the tunnel.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the replica at {relay} did not answer: {source}")]
    Unreachable {
        relay: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("bad relay address {0:?}")]
    Address(String),
}

impl Relay {
    pub fn new(master_key: &crate::secrets::MasterKey) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        Self {
            key: master_key.derive(PURPOSE),
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        }
    }

    /// Sends `req` (a request as the tunnel carries it) to the relay at `relay` (`host:port`)
    /// for `cell`'s tunnel; the answer as the tunnel's would be, or with [`NO_TUNNEL_HEADER`].
    pub async fn send(
        &self,
        relay: &str,
        cell: Uuid,
        req: hyper::Request<TunnelBody>,
    ) -> Result<hyper::Response<Incoming>, RelayError> {
        let (mut parts, body) = req.into_parts();
        let body = http_body_util::BodyExt::collect(body)
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_else(|never| match never {});
        let url = parts.uri.to_string();
        let time = chrono::Utc::now().timestamp();
        let signature = sign(
            &self.key,
            time,
            &parts.method,
            cell,
            &url,
            &parts.headers,
            &body,
        );
        let uri: hyper::Uri = format!("http://{relay}/relay/{cell}")
            .parse()
            .map_err(|_| RelayError::Address(relay.to_owned()))?;
        parts.uri = uri;
        let headers = &mut parts.headers;
        headers.insert(TIME_HEADER, HeaderValue::from(time));
        if let Ok(v) = HeaderValue::from_str(&url) {
            headers.insert(URL_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&signature) {
            headers.insert(SIGNATURE_HEADER, v);
        }
        headers.remove(header::HOST);
        self.client
            .request(hyper::Request::from_parts(parts, Full::new(body)))
            .await
            .map_err(|source| RelayError::Unreachable {
                relay: relay.to_owned(),
                source,
            })
    }
}

/// The signature of a relayed request: HMAC-SHA256 over its time, method, cell, URL,
/// environment, platform login and the SHA-256 of its body, in hex.
fn sign(
    key: &[u8; 32],
    time: i64,
    method: &Method,
    cell: Uuid,
    url: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    // Trimmed: HTTP drops a value's surrounding spaces on the way (`Bearer ` arrives `Bearer`).
    let header = |name: &str| {
        headers
            .get(name)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default()
            .trim_ascii()
            .to_vec()
    };
    for part in [
        time.to_string().into_bytes(),
        method.as_str().as_bytes().to_vec(),
        cell.to_string().into_bytes(),
        url.as_bytes().to_vec(),
        header(ENVIRONMENT_HEADER),
        header(header::AUTHORIZATION.as_str()),
        Sha256::digest(body).to_vec(),
    ] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(&part);
    }
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The relay listener's state.
#[derive(Clone)]
struct RelayState {
    key: [u8; 32],
    tunnels: std::sync::Arc<Tunnels>,
}

/// The relay listener's routes: `/relay/{cell}`, any method.
pub fn router(master_key: &crate::secrets::MasterKey, tunnels: std::sync::Arc<Tunnels>) -> Router {
    Router::new()
        .route("/relay/{cell}", any(relayed))
        .with_state(RelayState {
            key: master_key.derive(PURPOSE),
            tunnels,
        })
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    tracing::warn!(why, "refused a relayed request");
    (status, why).into_response()
}

/// A relayed request: checked, then sent over this replica's tunnel of the cell.
async fn relayed(State(s): State<RelayState>, Path(cell): Path<Uuid>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let text = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(time), Some(url), Some(signature)) = (
        text(TIME_HEADER).and_then(|t| t.parse::<i64>().ok()),
        text(URL_HEADER),
        text(SIGNATURE_HEADER),
    ) else {
        return refuse(StatusCode::UNAUTHORIZED, "not a signed relayed request");
    };
    if (chrono::Utc::now().timestamp() - time).abs() > MAX_SKEW {
        return refuse(StatusCode::UNAUTHORIZED, "the relayed request is too old");
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the relayed body is too large",
        );
    };
    let expected = sign(
        &s.key,
        time,
        &parts.method,
        cell,
        &url,
        &parts.headers,
        &body,
    );
    if !crate::auth::same_hash(expected.as_bytes(), signature.as_bytes()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the relayed request's signature is wrong",
        );
    }
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return refuse(StatusCode::BAD_REQUEST, "the relayed URL does not parse");
    };
    let Some(mut sender) = s.tunnels.sender(cell) else {
        let mut resp = StatusCode::SERVICE_UNAVAILABLE.into_response();
        resp.headers_mut().insert(
            HeaderName::from_static(NO_TUNNEL_HEADER),
            HeaderValue::from_static("1"),
        );
        return resp;
    };
    for name in [TIME_HEADER, URL_HEADER, SIGNATURE_HEADER] {
        parts.headers.remove(name);
    }
    parts.headers.remove(header::HOST);
    parts.uri = uri;
    let request = hyper::Request::from_parts(parts, Full::new(body));
    let sent = async {
        sender.ready().await?;
        sender.send_request(request).await
    }
    .await;
    match sent {
        Ok(resp) => resp.map(Body::new),
        Err(e) => {
            tracing::warn!(%cell, error = %e, "a relayed request over a cell's tunnel failed");
            // The tunnel broke under the request: the caller says so as it would for its own.
            let mut resp = StatusCode::BAD_GATEWAY.into_response();
            resp.headers_mut().insert(
                HeaderName::from_static(NO_TUNNEL_HEADER),
                HeaderValue::from_static("closed"),
            );
            resp
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_every_part_of_the_request() {
        let key = [7u8; 32];
        let cell = Uuid::new_v4();
        let mut headers = HeaderMap::new();
        headers.insert(ENVIRONMENT_HEADER, HeaderValue::from_static("e1"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        let url = "http://tunnel/x/api/v2/dags";
        let base = sign(&key, 100, &Method::GET, cell, url, &headers, b"body");
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            sign(&key, 100, &Method::GET, cell, url, &headers, b"body")
        );
        let mut other_env = headers.clone();
        other_env.insert(ENVIRONMENT_HEADER, HeaderValue::from_static("e2"));
        let mut other_login = headers.clone();
        other_login.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        for changed in [
            sign(&[8u8; 32], 100, &Method::GET, cell, url, &headers, b"body"),
            sign(&key, 101, &Method::GET, cell, url, &headers, b"body"),
            sign(&key, 100, &Method::POST, cell, url, &headers, b"body"),
            sign(
                &key,
                100,
                &Method::GET,
                Uuid::new_v4(),
                url,
                &headers,
                b"body",
            ),
            sign(
                &key,
                100,
                &Method::GET,
                cell,
                "http://tunnel/y/api/v2/dags",
                &headers,
                b"body",
            ),
            sign(&key, 100, &Method::GET, cell, url, &other_env, b"body"),
            sign(&key, 100, &Method::GET, cell, url, &other_login, b"body"),
            sign(&key, 100, &Method::GET, cell, url, &headers, b"bodz"),
        ] {
            assert_ne!(changed, base);
        }
        // A value's surrounding spaces do not survive HTTP, so they do not count.
        let mut spaced = headers.clone();
        spaced.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer a "));
        assert_eq!(
            sign(&key, 100, &Method::GET, cell, url, &spaced, b"body"),
            base
        );
    }
}
