//! The one way the control plane calls an environment's Airflow: over the tunnel its cell's
//! agent holds open (`crate::tunnel`). The request names the environment and a path under its
//! own Airflow path; the agent forwards it to that environment's api-server only. The control
//! plane itself never opens a connection to an address a cell reported, so a cell in another
//! network needs no inbound route, and a cell's report cannot point the platform anywhere
//! (docs/security.md, "The cell tunnel"). A cell whose tunnel another control-plane replica
//! holds is reached through that replica's relay (`crate::relay`); a cell without a tunnel is a
//! 503 that says so.

use std::time::Duration;

use bytes::Bytes;
use hangar_tenants::tunnel::{Refusal, ENVIRONMENT_HEADER, REFUSED_HEADER};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use tokio::time::Instant;

use super::airflow::AirflowTarget;
use super::{ServiceError, Services};

/// How much of an agent's refusal message is read.
const REFUSAL_BYTES: usize = 1024;

/// A request for an environment's Airflow.
#[derive(Debug)]
pub struct AirflowRequest {
    pub method: Method,
    /// Path under the environment's Airflow path, with its query, without a leading `/`
    /// (`api/v2/dags?limit=1`).
    pub tail: String,
    /// Headers to send besides the platform's login (`Authorization`).
    pub headers: HeaderMap,
    pub body: Bytes,
    /// How long the whole answer may take, its body included.
    pub within: Duration,
}

impl AirflowRequest {
    pub fn new(method: Method, tail: impl Into<String>, within: Duration) -> Self {
        Self {
            method,
            tail: tail.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            within,
        }
    }

    /// The request with a JSON body.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = Bytes::from(body.to_string());
        self.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self
    }
}

/// An environment's answer, its body still to be read.
#[derive(Debug)]
pub struct AirflowAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The URL asked for as the platform names it (on the tunnel's authority, never the
    /// environment's address): what a relative Location is resolved against.
    pub url: url::Url,
    pub body: Incoming,
    /// When the body must have arrived by, and the time it was given.
    pub deadline: Instant,
    pub within: Duration,
}

impl AirflowAnswer {
    /// The size the answer announced (`Content-Length`), if any.
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }
}

/// `env` did not answer within `within`.
pub fn too_slow(env: &str, within: Duration) -> ServiceError {
    ServiceError::Unavailable(format!(
        "environment {env:?} did not answer within {} s",
        within.as_secs()
    ))
}

impl Services {
    /// Sends `req` to `env`'s Airflow through its cell's tunnel, with the platform's login in
    /// `target`; the answer's headers within `req.within`.
    pub async fn call_airflow(
        &self,
        env: &str,
        target: &AirflowTarget,
        req: AirflowRequest,
    ) -> Result<AirflowAnswer, ServiceError> {
        let route = self.route_to(env, target).await?;
        let url = url::Url::parse(&format!("{}/{}", target.base_url(), req.tail))
            .ok()
            .filter(|u| {
                u.path() == target.path
                    || u.path()
                        .strip_prefix(target.path.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .ok_or_else(|| ServiceError::not_found("Airflow path", req.tail.clone()))?;
        let mut request = Request::builder()
            .method(req.method)
            .uri(url.as_str())
            .body(Full::new(req.body))
            .map_err(|_| ServiceError::not_found("Airflow path", req.tail.clone()))?;
        let headers = request.headers_mut();
        *headers = req.headers;
        headers.insert(
            ENVIRONMENT_HEADER,
            HeaderValue::from_str(&target.env_id.to_string())
                .unwrap_or(HeaderValue::from_static("")),
        );
        // The platform's login, and never a caller's; none yet on the call that logs in.
        headers.remove(header::AUTHORIZATION);
        if !target.token.is_empty() {
            if let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {}", target.token)) {
                headers.insert(header::AUTHORIZATION, bearer);
            }
        }
        let deadline = Instant::now() + req.within;
        let sent = tokio::time::timeout_at(deadline, async {
            match route {
                Route::Here(mut sender) => {
                    sender.ready().await.map_err(Sent::Tunnel)?;
                    sender.send_request(request).await.map_err(Sent::Tunnel)
                }
                Route::Relay(relay) => self
                    .relay
                    .send(&relay, target.cell_id, request)
                    .await
                    .map_err(Sent::Relay),
            }
        })
        .await;
        let closed = || {
            ServiceError::Unavailable(format!(
                "environment {env:?} did not answer: the tunnel to its cell {:?} closed; try again",
                target.cell
            ))
        };
        let resp = match sent {
            Err(_) => return Err(too_slow(env, req.within)),
            Ok(Err(Sent::Tunnel(e))) => {
                tracing::warn!(env, cell = %target.cell, error = %e, "a request over a cell's tunnel failed");
                return Err(closed());
            }
            Ok(Err(Sent::Relay(e))) => {
                tracing::warn!(env, cell = %target.cell, error = %e, "a request relayed to the replica holding a cell's tunnel failed");
                return Err(ServiceError::Unavailable(format!(
                    "environment {env:?} did not answer: the control-plane replica holding its cell {:?}'s tunnel did not answer; try again",
                    target.cell
                )));
            }
            Ok(Ok(resp)) => resp,
        };
        match resp
            .headers()
            .get(crate::relay::NO_TUNNEL_HEADER)
            .map(HeaderValue::as_bytes)
        {
            None => {}
            Some(b"closed") => return Err(closed()),
            Some(_) => return Err(no_tunnel(env, &target.cell)),
        }
        let refusal = resp
            .headers()
            .get(REFUSED_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| Refusal::parse(v).unwrap_or(Refusal::Unanswered));
        let (parts, body) = resp.into_parts();
        if let Some(why) = refusal {
            let said =
                tokio::time::timeout_at(deadline, Limited::new(body, REFUSAL_BYTES).collect())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                    .unwrap_or_default();
            return Err(refused(env, &target.cell, why, &said));
        }
        Ok(AirflowAnswer {
            status: parts.status,
            headers: parts.headers,
            url,
            body,
            deadline,
            within: req.within,
        })
    }

    /// `req`'s answer read whole as JSON (`Null` when it is not JSON), bounded by the proxy's
    /// bound, and its status.
    pub async fn airflow_json(
        &self,
        env: &str,
        target: &AirflowTarget,
        req: AirflowRequest,
    ) -> Result<(StatusCode, serde_json::Value), ServiceError> {
        let answer = self.call_airflow(env, target, req).await?;
        let limit = usize::try_from(self.proxy_max_response).unwrap_or(usize::MAX);
        let body =
            tokio::time::timeout_at(answer.deadline, Limited::new(answer.body, limit).collect())
                .await
                .map_err(|_| too_slow(env, answer.within))?
                .map_err(|e| {
                    ServiceError::Unavailable(format!(
                        "environment {env:?} did not answer whole: {e}"
                    ))
                })?;
        let json = serde_json::from_slice(&body.to_bytes()).unwrap_or_default();
        Ok((answer.status, json))
    }
}

/// The way to a cell's tunnel: held by this replica, or by the one whose relay is given.
enum Route {
    Here(hyper::client::conn::http2::SendRequest<crate::tunnel::TunnelBody>),
    Relay(String),
}

/// How sending over a [`Route`] failed.
enum Sent {
    Tunnel(hyper::Error),
    Relay(crate::relay::RelayError),
}

fn no_tunnel(env: &str, cell: &str) -> ServiceError {
    ServiceError::Unavailable(format!(
        "environment {env:?} cannot be reached: its cell {cell:?} has no tunnel open to the control plane (is its agent running?)"
    ))
}

impl Services {
    /// Where `target`'s cell's tunnel is: here, or at another replica (`cell_tunnels`).
    async fn route_to(&self, env: &str, target: &AirflowTarget) -> Result<Route, ServiceError> {
        if let Some(sender) = self.tunnels.sender(target.cell_id) {
            return Ok(Route::Here(sender));
        }
        let holder = crate::persistence::tunnels::holder(
            &self.db.pool,
            target.cell_id,
            crate::tunnel::RECORD_FRESH.as_secs_f64(),
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "failed to read a cell's tunnel");
            ServiceError::Unavailable(format!(
                "environment {env:?} cannot be reached now: the control plane could not look up its cell's tunnel; try again"
            ))
        })?;
        match holder {
            // A record of this replica's own is of a tunnel that just ended.
            Some(h) if Some(h.replica) != self.tunnels.replica() => Ok(Route::Relay(h.relay)),
            _ => Err(no_tunnel(env, &target.cell)),
        }
    }
}

/// What the caller is told when the cell's agent did not forward a request.
fn refused(env: &str, cell: &str, why: Refusal, said: &str) -> ServiceError {
    match why {
        Refusal::UnknownEnvironment => ServiceError::Unavailable(format!(
            "environment {env:?} is not running on its cell {cell:?}: the cell's agent does not know it (yet)"
        )),
        Refusal::OutsideEnvironment => ServiceError::BadGateway(format!(
            "the agent of cell {cell:?} refused the path as outside environment {env:?}"
        )),
        Refusal::ConnectionRefused => ServiceError::Unavailable(format!(
            "environment {env:?} did not answer: its api-server refused the connection (starting or stopped?)"
        )),
        Refusal::Unanswered => ServiceError::Unavailable(format!(
            "environment {env:?} did not answer: {}",
            said.trim()
        )),
    }
}
