//! Wakes long polls when a cell's assignments change, and forgets revoked tokens and deleted
//! tenants' tokens: Postgres `LISTEN`s on the channels the service layer `NOTIFY`s in its
//! transactions, so both work across control-plane replicas.

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const CHANNEL: &str = "hangar_cell_changes";

/// Connects the listener and spawns its loop; the receiver's value increases on every change
/// (and after every reconnect, since notifications may have been missed meanwhile).
pub async fn listen(
    pool: &PgPool,
    cancel: CancellationToken,
) -> Result<watch::Receiver<u64>, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                next = listener.recv() => {
                    if let Err(e) = next {
                        tracing::warn!(error = %e, "change listener lost its connection; reconnecting");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    tx.send_modify(|n| *n += 1);
                }
            }
        }
    });
    Ok(rx)
}

pub const PRINCIPALS_CHANNEL: &str = "hangar_principals";

/// Connects a listener and spawns its loop: each revocation any replica announces
/// (`persistence::tokens::notify_gone`) is forgotten from `cache`, and everything after a
/// reconnect (notices may have been missed meanwhile).
pub async fn forget_principals(
    pool: &PgPool,
    cache: std::sync::Arc<crate::auth::PrincipalCache>,
    cancel: CancellationToken,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(PRINCIPALS_CHANNEL).await?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                next = listener.try_recv() => match next {
                    Ok(Some(n)) => cache.forget(n.payload()),
                    Ok(None) => {
                        tracing::warn!("revocation listener lost its connection; reconnecting");
                        cache.clear();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation listener failed; retrying");
                        cache.clear();
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                },
            }
        }
    });
    Ok(())
}
