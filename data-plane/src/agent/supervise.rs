//! The agent's background work is never silently gone: each long-running loop (an
//! environment's reconciler, the log shipper, the Airflow CLI loop, the tunnel) runs as a task
//! of its own under [`supervise`], which logs a panic with its message and starts the loop
//! again after a pause, 1 s doubling up to 30 s while it keeps panicking (back to 1 s once it
//! ran a minute). A loop that returns (the agent stops, an environment is deleted) is not
//! started again. The agent registers again after each panic with the count so far, which the
//! control plane shows with the cell and in `/metrics` (`hangar_cell_agent_panics_total`).
//!
//! Locks shared between those loops are taken with [`lock`], which ignores poisoning: the
//! data behind them (maps of plain values, each change made whole under the lock) stays
//! usable after a panic elsewhere, so one panic never turns autoscaling or the CLI off.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The first pause before a panicked loop starts again, and the longest.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);
/// A loop that ran this long before it panicked starts again after the first pause.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Panics of the agent's loops since it started (every loop, all restarted).
static PANICS: AtomicU64 = AtomicU64::new(0);

/// Told of each panic (a permit is kept when nobody waits), so the agent reports it.
static PANICKED: Notify = Notify::const_new();

/// How many times the agent's loops panicked since it started.
pub(crate) fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Returns once a loop panicked since the last call returned.
pub(crate) async fn panicked() {
    PANICKED.notified().await;
}

/// Takes a lock whether or not a panic poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Aborts the task it holds when dropped: a supervisor that is itself dropped (its agent
/// aborted) leaves nothing running behind it.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the loop `start` makes until it returns; starts a new one each time it panics.
pub(crate) async fn supervise<F, Fut>(name: String, mut start: F, cancel: CancellationToken)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pause = FIRST_PAUSE;
    loop {
        let started = Instant::now();
        let task = tokio::spawn(start());
        let guard = AbortOnDrop(task.abort_handle());
        let ended = task.await;
        drop(guard);
        let message = match ended {
            Ok(()) => return,
            Err(e) if e.is_cancelled() => return,
            Err(e) => panic_message(e.into_panic()),
        };
        let n = PANICS.fetch_add(1, Ordering::Relaxed) + 1;
        PANICKED.notify_one();
        if cancel.is_cancelled() {
            tracing::error!(task = %name, panic = %message, "a loop of the agent panicked while it stopped");
            return;
        }
        if started.elapsed() >= HEALTHY_RUN {
            pause = FIRST_PAUSE;
        }
        tracing::error!(task = %name, panic = %message, panics = n, restart_in = ?pause,
            "a loop of the agent panicked; starting it again");
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// The text a panic was raised with.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |s| (*s).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_loop_is_started_again_until_it_returns() {
        let runs = Arc::new(AtomicU32::new(0));
        let before = panics();
        let r = runs.clone();
        supervise(
            "test".to_owned(),
            move || {
                let r = r.clone();
                async move {
                    if r.fetch_add(1, Ordering::SeqCst) < 2 {
                        panic!("boom");
                    }
                }
            },
            CancellationToken::new(),
        )
        .await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "two panics, then it returned"
        );
        assert!(panics() >= before + 2);
        // The agent is told, so it registers again with the count.
        tokio::time::timeout(Duration::from_secs(1), panicked())
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_agent_does_not_start_it_again() {
        let cancel = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let (r, c) = (runs.clone(), cancel.clone());
        supervise(
            "test".to_owned(),
            move || {
                let (r, c) = (r.clone(), c.clone());
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    c.cancel();
                    panic!("boom while stopping");
                }
            },
            cancel,
        )
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_poisoned_lock_is_still_usable() {
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _held = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
