//! The agent's end of the cell's tunnel: one long-lived connection the agent opens to the
//! control plane (`GET /v1/cells/{cell}/tunnel` with the cell token, upgraded), on which the
//! control plane is the HTTP/2 client and the agent the server. Through it the control plane
//! reaches the cell's environments' Airflow without any route into the cell: the agent
//! forwards each request only to the environment it names, if the cell runs it ([`forward`]).
//! The connection is kept alive with HTTP/2 pings and opened again with jittered exponential
//! backoff whenever it ends (docs/security.md, "The cell tunnel").

mod forward;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use hangar_client::Client;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

pub use forward::{Forwarder, TunnelEnvironments};

/// How often either side pings an idle tunnel, and how long it waits for the answer before it
/// takes the connection for dead (a half-open TCP connection, a NAT that forgot it).
const KEEPALIVE: Duration = Duration::from_secs(20);
/// Requests served side by side on one tunnel.
const MAX_STREAMS: u32 = 256;
/// A tunnel that lasted this long was healthy: the next reconnect starts from the shortest
/// delay again.
const STABLE: Duration = Duration::from_secs(30);
/// Reconnect delays: from half a second, doubling, jittered, up to a minute.
const MIN_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(60);

fn reconnect_delays() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .without_max_times()
        .build()
}

/// Keeps the cell's tunnel open until `cancel`, serving the control plane's requests for the
/// environments in `envs`.
pub async fn run(
    client: Client,
    cell: String,
    envs: TunnelEnvironments,
    cancel: CancellationToken,
) {
    let forwarder = Forwarder::new(envs);
    let mut delays = reconnect_delays();
    while !cancel.is_cancelled() {
        let opened = tokio::select! {
            () = cancel.cancelled() => break,
            r = client.open_tunnel(&cell) => r,
        };
        match opened {
            Ok(io) => {
                tracing::info!(cell, "tunnel to the control plane up");
                let started = Instant::now();
                match serve(io, forwarder.clone(), cancel.clone()).await {
                    Ok(()) => tracing::info!(cell, "tunnel to the control plane closed"),
                    Err(e) => {
                        tracing::warn!(cell, error = %e, "tunnel to the control plane broke")
                    }
                }
                if started.elapsed() >= STABLE {
                    delays = reconnect_delays();
                }
            }
            Err(e) => tracing::warn!(cell, error = %e, "failed to open the tunnel; retrying"),
        }
        let delay = delays.next().unwrap_or(MAX_DELAY);
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Serves HTTP/2 on an opened tunnel (`Client::open_tunnel`) until the control plane closes
/// it, it stops answering pings, or `cancel`; once, without reconnecting.
pub async fn serve(
    io: reqwest::Upgraded,
    forwarder: Forwarder,
    cancel: CancellationToken,
) -> Result<(), hyper::Error> {
    let service = service_fn(move |req| {
        let forwarder = forwarder.clone();
        async move { Ok::<_, Infallible>(forwarder.handle(req).await) }
    });
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .max_concurrent_streams(MAX_STREAMS)
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        r = conn => r,
        () = cancel.cancelled() => Ok(()),
    }
}
