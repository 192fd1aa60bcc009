//! The control plane's end of cells' tunnels: the registry of live tunnels, one per cell, and
//! the HTTP/2 client it runs on each. An agent opens its cell's tunnel
//! (`GET /v1/cells/{cell}/tunnel`, `api::cells::open_tunnel`); the control plane then sends the
//! requests for that cell's environments' Airflow over it (`service::airflow_call`). A newer
//! tunnel of a cell replaces the older one, which is closed. A cell's tunnel is live on the
//! replica its agent reached; with a relay (`crate::relay`) that replica records itself in
//! `cell_tunnels` as the tunnel lives, and the other replicas relay the cell's requests to it
//! (docs/security.md, "The cell tunnel").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The body of a request over a tunnel (the proxy reads its callers' bodies whole, bounded).
pub type TunnelBody = Full<Bytes>;

/// How often the control plane pings an idle tunnel, and how long it waits for the answer
/// before it takes the tunnel for dead.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// How often a replica touches the record of each tunnel it holds.
const TOUCH_EVERY: Duration = Duration::from_secs(20);

/// How long a touch may take.
const TOUCH_WITHIN: Duration = Duration::from_secs(2);

/// How long a tunnel's record stays believed without a touch: past it, the replica that wrote
/// it is taken for dead.
pub const RECORD_FRESH: Duration = Duration::from_secs(65);

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("failed to start HTTP/2 on cell {cell:?}'s tunnel: {source}")]
    Handshake {
        cell: String,
        #[source]
        source: hyper::Error,
    },
}

#[derive(Debug)]
struct Live {
    generation: u64,
    sender: SendRequest<TunnelBody>,
    stop: CancellationToken,
}

/// Where a replica records the tunnels it holds, for the other replicas to relay to.
#[derive(Debug, Clone)]
pub struct Registration {
    pub pool: sqlx::PgPool,
    /// This replica's id, new at every start.
    pub replica: Uuid,
    /// `host:port` of this replica's relay listener.
    pub relay: String,
}

/// The live tunnel of each cell, by cell id.
#[derive(Debug, Default)]
pub struct Tunnels {
    live: Mutex<HashMap<Uuid, Live>>,
    generations: AtomicU64,
    /// Cancelled when the control plane stops: every tunnel closes with it.
    shutdown: CancellationToken,
    registration: Option<Registration>,
}

impl Tunnels {
    /// Tunnels recorded in `cell_tunnels` as they come and go.
    pub fn registered(registration: Registration) -> Self {
        Self {
            registration: Some(registration),
            ..Self::default()
        }
    }

    /// This replica's id, if it records its tunnels.
    pub fn replica(&self) -> Option<Uuid> {
        self.registration.as_ref().map(|r| r.replica)
    }

    /// Where to send a request for the cell's environments, if its agent holds a tunnel open.
    pub fn sender(&self, cell: Uuid) -> Option<SendRequest<TunnelBody>> {
        let live = self.live.lock().ok()?;
        live.get(&cell)
            .filter(|l| !l.sender.is_closed())
            .map(|l| l.sender.clone())
    }

    /// Whether the cell's agent holds a tunnel open to this replica.
    pub fn is_connected(&self, cell: Uuid) -> bool {
        self.sender(cell).is_some()
    }

    /// Closes every tunnel (the control plane is stopping); agents reconnect to whichever
    /// replica answers next.
    pub fn close_all(&self) {
        self.shutdown.cancel();
    }

    /// Runs HTTP/2 (as the client) on a cell's freshly upgraded connection `io`, and makes it
    /// the cell's tunnel until it ends: closed by the agent, dead (no answer to pings),
    /// replaced by a newer tunnel of the cell, or the control plane stopping.
    pub async fn serve<I>(&self, cell: Uuid, name: &str, io: I) -> Result<(), TunnelError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .keep_alive_while_idle(true)
            .handshake(io)
            .await
            .map_err(|source| TunnelError::Handshake {
                cell: name.to_owned(),
                source,
            })?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let stop = self.shutdown.child_token();
        let replaced = self.live.lock().ok().and_then(|mut live| {
            live.insert(
                cell,
                Live {
                    generation,
                    sender,
                    stop: stop.clone(),
                },
            )
        });
        if let Some(older) = replaced {
            tracing::info!(
                cell = name,
                "a newer tunnel of the cell replaces its older one"
            );
            older.stop.cancel();
        }
        metrics::gauge!("hangar_cell_tunnel_up", "cell" => name.to_owned()).set(1.0);
        metrics::counter!("hangar_cell_tunnel_connections_total", "cell" => name.to_owned())
            .increment(1);
        tracing::info!(cell = name, "cell tunnel up");
        let generation_id = i64::try_from(generation).unwrap_or(i64::MAX);
        if let Some(r) = &self.registration {
            if let Err(e) = crate::persistence::tunnels::claim(
                &r.pool,
                cell,
                r.replica,
                generation_id,
                &r.relay,
            )
            .await
            {
                tracing::warn!(cell = name, error = %e, "failed to record the cell's tunnel; the other replicas cannot relay to it until the next touch");
            }
        }
        let mut touch = tokio::time::interval(TOUCH_EVERY);
        touch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        touch.tick().await;
        tokio::pin!(conn);
        let ended = loop {
            tokio::select! {
                r = &mut conn => break r.err(),
                () = stop.cancelled() => break None,
                _ = touch.tick() => {
                    // Awaited here, so that no touch can follow the release below and record
                    // a tunnel that ended; bounded, so that a slow database holds the tunnel's
                    // connection up for a moment at most.
                    if let Some(r) = &self.registration {
                        let touched = tokio::time::timeout(
                            TOUCH_WITHIN,
                            crate::persistence::tunnels::touch(
                                &r.pool, cell, r.replica, generation_id, &r.relay,
                            ),
                        )
                        .await;
                        if !matches!(touched, Ok(Ok(()))) {
                            tracing::warn!(cell = name, "failed to touch the record of the cell's tunnel");
                        }
                    }
                }
            }
        };
        let current = self.live.lock().ok().is_some_and(|mut live| {
            let current = live.get(&cell).is_some_and(|l| l.generation == generation);
            if current {
                live.remove(&cell);
            }
            current
        });
        if current {
            metrics::gauge!("hangar_cell_tunnel_up", "cell" => name.to_owned()).set(0.0);
        }
        if let Some(r) = &self.registration {
            if let Err(e) =
                crate::persistence::tunnels::release(&r.pool, cell, r.replica, generation_id).await
            {
                tracing::warn!(cell = name, error = %e, "failed to forget the record of the cell's tunnel; it goes stale by itself");
            }
        }
        match ended {
            Some(e) => tracing::warn!(cell = name, error = %e, "cell tunnel broke"),
            None => tracing::info!(cell = name, "cell tunnel down"),
        }
        Ok(())
    }
}
