//! The reconciler of one environment, on whatever runtime the cell has. Shaped as in kube-rs's
//! `controller-rs`: [`Reconciler::reconcile`] is one idempotent pass from the assignment (apply
//! the revision if needed, sync from the bucket, autoscale, observe, report) that returns the
//! [`Action`] to take next, and [`Reconciler::error_policy`] turns a failure into one: a
//! permanent fault (the tenant must change something) waits for a new revision while the
//! running one keeps being observed; a transient fault backs off exponentially and is
//! reported as a failure after a few attempts.

use std::time::{Duration, Instant};

use hangar_client::Client;
use hangar_tenants::api::Assignment;
use hangar_tenants::{FailedApply, LogDiskFull, ObservedState, ReconcileCounters};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::autoscale::{self, Pool, Scaler};
use super::{AgentSettings, CliTargets, OnShutdown};
use crate::bucket::Bucket;
use crate::cell_runtime::{EnvironmentRuntime, Runtime, RuntimeFailure};
use crate::log_ship::LogSources;

/// Reports at least this often even when nothing changed (the control plane's liveness view).
const REPORT_EVERY: Duration = Duration::from_secs(15);
/// Failed applies of one revision after which a transient fault is reported as a failure.
const REPORT_FAILURE_AFTER: u32 = 3;
/// How long before its next scheduled DAG run a hibernating environment is started again: its
/// processes start and its scheduler is up (about 20 s on a small machine) before the run is
/// due, so the run starts on time.
pub(crate) const WAKE_AHEAD: Duration = Duration::from_secs(60);
/// The shortest sleep worth stopping an environment for.
const MIN_SLEEP: Duration = Duration::from_secs(10);
/// How often an awake environment that may hibernate by itself is checked for idleness.
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(5);

/// What the environment's loop does after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Run again after this long, or as soon as the assignment changes.
    Requeue(Duration),
    /// The environment is gone (deleted and reported): its loop ends.
    Done,
}

/// Why a pass failed.
#[derive(Debug)]
pub(crate) enum Failure<E> {
    /// Applying `revision` failed; the previous revision keeps running.
    Apply { revision: i64, error: E },
    /// Deleting failed, or its report did not reach the control plane; deleting is retried.
    Delete(String),
}

/// What an environment's reconciler shares with the rest of the cell's agent.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    /// The cell's worker slots now (a Kubernetes cell's pool follows its worker nodes).
    pub(crate) slots: std::sync::Arc<std::sync::atomic::AtomicU32>,
    pub(crate) targets: CliTargets,
    pub(crate) sources: LogSources,
    /// Where the cell's tunnel forwards each environment's Airflow requests.
    pub(crate) tunnel: crate::tunnel::TunnelEnvironments,
}

/// One environment's reconciler and what it remembers between passes.
pub(crate) struct Reconciler<E> {
    env: E,
    client: Client,
    settings: AgentSettings,
    bucket: Option<Bucket>,
    shared: Shared,
    id: Uuid,
    /// `tenant/name`, for logs.
    name: String,
    /// The revision applied last.
    applied: Option<i64>,
    /// The assignment whose revision runs: scaling re-applies it, never a newer failing one.
    running: Option<Assignment>,
    scaler: Scaler,
    /// The revision whose apply failed for good (reported; not retried until a new one).
    failed: Option<FailedApply>,
    /// Failed attempts at one revision.
    attempts: (i64, u32),
    retry_at: Instant,
    last: Option<(ObservedState, Instant)>,
    counters: ReconcileCounters,
    /// Awake with nothing to run: since when (this agent's view), and when the next scheduled
    /// DAG run is due; reported, so the control plane can hibernate it after its idle window.
    idleness: Option<(
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
    )>,
    idle_checked: Option<Instant>,
    /// Its logs are shipped (from its first reconcile, or once a prepared one is claimed).
    logs_registered: bool,
    /// Its home on this machine, whose log folders are watched for a full disk.
    log_home: Option<std::path::PathBuf>,
    /// The disk under its log folders is full: since when, and which.
    log_disk: Option<LogDiskFull>,
}

impl<E: EnvironmentRuntime> Reconciler<E> {
    /// One pass. Idempotent: any pass may be the first after a crash.
    pub(crate) async fn reconcile(&mut self, a: &Assignment) -> Result<Action, Failure<E::Error>> {
        if a.delete {
            return self.delete(a).await;
        }
        // A prepared environment nobody claimed syncs no bucket and ships no logs; once
        // claimed, it does both under its tenant's name.
        if !a.warm && !self.logs_registered {
            if let Some(source) = self.env.log_source(a) {
                self.log_home = Some(source.home.clone());
                self.shared.sources.insert(self.id, source);
            }
            self.logs_registered = true;
            self.name = format!("{}/{}", a.tenant, a.name);
        }
        if let Some(asleep) = self.env.hibernated() {
            let due = asleep.wake_at.is_some_and(|at| chrono::Utc::now() >= at);
            if a.hibernate && !due {
                // Asleep, as asked: nothing runs, nothing syncs (the next wake does).
                self.report().await;
                return Ok(Action::Requeue(self.settings.tick));
            }
            // Woken, or its next scheduled run is near: it starts again at the revision it
            // should run (and, still asked to hibernate, sleeps again once that run is done).
            if due && a.hibernate {
                tracing::info!(env = %self.name, wake_at = ?asleep.wake_at, "waking for its next scheduled DAG run");
            } else {
                tracing::info!(env = %self.name, "waking from hibernation");
            }
            self.applied = None;
            self.failed = None;
            self.retry_at = Instant::now();
        }
        let wanted = self.applied != Some(a.revision)
            && self.failed.as_ref().map(|f| f.revision) != Some(a.revision);
        if wanted && Instant::now() >= self.retry_at {
            self.apply(a).await?;
        }
        if self.applied.is_some() && !a.warm {
            self.sync_bucket(a).await;
        }
        if let Some(r) = self.running.clone() {
            self.env.on_demand(&r).await;
        }
        // The task pool shares its own slots among environments with the `hangar` executor:
        // they run no Celery worker and take no worker slot.
        if let Some(r) = self
            .running
            .clone()
            .filter(|r| r.spec.executor == hangar_tenants::Executor::Hangar)
        {
            autoscale::leave(&self.shared.pool, r.id);
        } else if let Some(r) = self.running.clone() {
            autoscale::autoscale(
                &mut self.env,
                &r,
                &self.shared.pool,
                self.shared.slots.load(std::sync::atomic::Ordering::Relaxed),
                &mut self.scaler,
            )
            .await;
        }
        if let Some(t) = self.env.cli_target() {
            let mut all = super::supervise::lock(&self.shared.targets);
            if all.get(&self.id) != Some(&t) {
                all.insert(self.id, t);
            }
        }
        if a.hibernate && self.applied.is_some() {
            self.hibernate_when_idle(a).await;
        }
        self.watch_idleness(a).await;
        self.report().await;
        Ok(Action::Requeue(self.settings.tick))
    }

    /// Asked to hibernate: stops the environment once nothing of it is to run (no DAG run
    /// queued or running), so no task is lost; until then it keeps running and scaling. It is
    /// to wake [`WAKE_AHEAD`] before its next scheduled run, so the run starts on time; when
    /// that leaves less than [`MIN_SLEEP`] of sleep, it stays up.
    async fn hibernate_when_idle(&mut self, a: &Assignment) {
        let next_run = match self.env.idle(a).await {
            Ok(i) if i.idle => i.next_run,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(env = %self.name, error = %e, "failed to read whether anything is to run; not hibernating");
                return;
            }
        };
        let ahead = chrono::Duration::from_std(WAKE_AHEAD).unwrap_or_default();
        let wake_at = next_run.map(|at| at - ahead);
        let min_sleep = chrono::Duration::from_std(MIN_SLEEP).unwrap_or_default();
        if wake_at.is_some_and(|w| w <= chrono::Utc::now() + min_sleep) {
            return;
        }
        let span = reconcile_span("hibernate", a);
        let started = Instant::now();
        match self.env.hibernate(wake_at).instrument(span.clone()).await {
            Ok(()) => {
                let _enter = span.enter();
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    wake_at = ?wake_at,
                    "hibernated"
                );
                self.applied = None;
                self.running = None;
                autoscale::leave(&self.shared.pool, self.id);
                self.shared.tunnel.remove(self.id);
            }
            Err(e) => {
                failure(&span, &mut self.counters, e.category());
                tracing::warn!(env = %self.name, error = %e, "failed to hibernate");
            }
        }
    }

    /// Keeps track of how long an awake environment that may hibernate by itself
    /// (`hibernate_after_idle_minutes` > 0) has had nothing to run; the control plane, which
    /// also knows when it was last used, asks it to hibernate once its idle window has passed.
    async fn watch_idleness(&mut self, a: &Assignment) {
        // Counted from when it is up: an environment still starting is not idle.
        let up = self.last.as_ref().is_some_and(|(o, _)| {
            !o.components.is_empty() && o.components.iter().all(|c| c.healthy)
        });
        let watched =
            up && self.applied.is_some() && !a.hibernate && a.spec.hibernate_after_idle_minutes > 0;
        if !watched {
            self.idleness = None;
            self.idle_checked = None;
            return;
        }
        if self
            .idle_checked
            .is_some_and(|at| at.elapsed() < IDLE_CHECK_EVERY)
        {
            return;
        }
        self.idle_checked = Some(Instant::now());
        match self.env.idle(a).await {
            Ok(i) if i.idle => {
                let since = self
                    .idleness
                    .map_or_else(chrono::Utc::now, |(since, _)| since);
                self.idleness = Some((since, i.next_run));
            }
            Ok(_) => self.idleness = None,
            Err(e) => {
                self.idleness = None;
                tracing::debug!(env = %self.name, error = %e, "failed to read whether anything is to run");
            }
        }
    }

    /// Notes when the disk under the environment's log folders fills up and when it has room
    /// again, in the agent's log and in what it reports. Its tasks keep running meanwhile (the
    /// runtime's log guard drops the lines that cannot be written, and says so in the task's
    /// log once it can).
    fn watch_log_disk(&mut self) {
        let Some(home) = &self.log_home else {
            return;
        };
        let full = crate::log_ship::full_log_folders(home);
        match (&mut self.log_disk, full.is_empty()) {
            (None, false) => {
                tracing::warn!(
                    env = %self.name,
                    folders = ?full,
                    below_bytes = crate::log_ship::FULL_BELOW,
                    "the disk under the environment's log folders is full: its tasks keep running, log lines written now are dropped"
                );
                self.log_disk = Some(LogDiskFull {
                    since: chrono::Utc::now(),
                    folders: full,
                });
            }
            (Some(d), true) => {
                let secs = chrono::Utc::now()
                    .signed_duration_since(d.since)
                    .num_seconds();
                tracing::info!(
                    env = %self.name,
                    folders = ?d.folders,
                    full_for_secs = secs,
                    "the disk under the environment's log folders has room again; log lines written while it was full are missing"
                );
                self.log_disk = None;
            }
            (Some(d), false) => d.folders = full,
            (None, true) => {}
        }
    }

    /// What to do after a failed pass.
    pub(crate) fn error_policy(&mut self, failure: Failure<E::Error>) -> Action {
        match failure {
            Failure::Apply { revision, error } => {
                if self.attempts.0 != revision {
                    self.attempts = (revision, 0);
                }
                self.attempts.1 += 1;
                let message = format!("{error}{}", super::source_chain(&error));
                tracing::warn!(env = %self.name, revision, error = %message, attempt = self.attempts.1, "apply failed");
                if error.is_permanent() || self.attempts.1 >= REPORT_FAILURE_AFTER {
                    // Not retried until a new revision; the running one is still observed.
                    self.failed = Some(FailedApply { revision, message });
                }
                let backoff = Duration::from_secs(5 * 2u64.pow(self.attempts.1.min(4)));
                self.retry_at = Instant::now() + backoff;
            }
            Failure::Delete(e) => {
                tracing::warn!(env = %self.name, error = %e, "failed to delete; retrying")
            }
        }
        // The next pass reports the failure and keeps observing what runs.
        Action::Requeue(self.settings.tick)
    }

    async fn apply(&mut self, a: &Assignment) -> Result<(), Failure<E::Error>> {
        let span = reconcile_span("apply", a);
        let started = Instant::now();
        let result = self.env.apply(a).instrument(span.clone()).await;
        let _enter = span.enter();
        match result {
            Ok(()) => {
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "applied");
                self.applied = Some(a.revision);
                self.running = Some(a.clone());
                self.failed = None;
                Ok(())
            }
            Err(error) => {
                failure(&span, &mut self.counters, error.category());
                Err(Failure::Apply {
                    revision: a.revision,
                    error,
                })
            }
        }
    }

    async fn sync_bucket(&mut self, a: &Assignment) {
        let name = &self.name;
        match self.env.sync_bucket(a).await {
            Ok(out) => {
                if out.dags.switched {
                    self.counters.dag_syncs_changed += 1;
                    tracing::info!(
                        env = %name,
                        downloaded = out.dags.downloaded.len(),
                        removed = out.dags.removed.len(),
                        bytes = out.dags.bytes,
                        "synced DAGs"
                    );
                }
                if out.plugins_changed && self.failed.is_none() {
                    tracing::info!(env = %name, "plugins changed; restarting what loads them");
                    let span = reconcile_span("restart for plugins", a);
                    match self.env.apply(a).instrument(span.clone()).await {
                        Ok(()) => self.counters.plugin_restarts += 1,
                        Err(e) => {
                            failure(&span, &mut self.counters, e.category());
                            tracing::warn!(env = %name, error = %e, "failed to restart for new plugins");
                        }
                    }
                }
            }
            Err(e) => {
                self.counters.dag_syncs_failed += 1;
                tracing::warn!(env = %name, error = %e, "failed to sync from the bucket")
            }
        }
    }

    /// Observes the environment and reports when something changed (or at least every
    /// [`REPORT_EVERY`]).
    async fn report(&mut self) {
        let mut observed = self.env.observe(self.failed.clone()).await;
        if let Some(url) = observed.endpoints.get("api") {
            self.shared.tunnel.set(self.id, url);
        }
        observed.reconcile = Some(self.counters.clone());
        if let Some((since, next_run)) = self.idleness.filter(|_| !observed.hibernated) {
            observed.idle_since = Some(since);
            observed.next_run = next_run;
        }
        self.watch_log_disk();
        observed.log_disk = self.log_disk.clone();
        let due = self
            .last
            .as_ref()
            .is_none_or(|(o, at)| *o != observed || at.elapsed() >= REPORT_EVERY);
        if due {
            match self
                .client
                .report_observed(&self.settings.cell, self.id, &observed)
                .await
            {
                Ok(_) => self.last = Some((observed, Instant::now())),
                Err(e) => tracing::warn!(env = %self.name, error = %e, "failed to report"),
            }
        }
    }

    async fn delete(&mut self, a: &Assignment) -> Result<Action, Failure<E::Error>> {
        // No shipper pass writes the environment's logs after this, so deleting them below
        // leaves none behind.
        self.shared.sources.remove(self.id).await;
        let span = reconcile_span("delete", a);
        let deleted = async {
            self.env.delete(a).await.map_err(|e| e.to_string())?;
            // Its logs go with it (kept for the retention only while it exists).
            match &self.bucket {
                Some(b) => crate::log_ship::delete_logs(b, &a.tenant, &a.name, self.id)
                    .await
                    .map_err(|e| e.to_string()),
                None => Ok(()),
            }
        }
        .instrument(span.clone())
        .await;
        if let Err(e) = deleted {
            failure(&span, &mut self.counters, "delete");
            return Err(Failure::Delete(e));
        }
        let gone = ObservedState {
            deleted: true,
            ..Default::default()
        };
        self.client
            .report_observed(&self.settings.cell, self.id, &gone)
            .await
            .map_err(|e| Failure::Delete(format!("failed to report the deletion: {e}")))?;
        tracing::info!(env = %self.name, "deleted");
        autoscale::leave(&self.shared.pool, self.id);
        super::supervise::lock(&self.shared.targets).remove(&self.id);
        self.shared.tunnel.remove(self.id);
        Ok(Action::Done)
    }

    /// The agent stops: the environment is left running for the next agent, or stopped.
    async fn shut_down(&mut self) {
        match self.settings.on_shutdown {
            OnShutdown::Detach => self.env.detach(),
            OnShutdown::Stop => {
                let stopped = self.env.stop().await;
                if let Err(e) = self
                    .client
                    .report_observed(&self.settings.cell, self.id, &stopped)
                    .await
                {
                    tracing::warn!(env = %self.name, error = %e, "failed to report the stop");
                }
            }
        }
    }
}

/// Reconciles one environment until it is deleted or the agent stops.
pub(crate) async fn environment_task<R: Runtime>(
    client: Client,
    settings: AgentSettings,
    runtime: R,
    mut rx: watch::Receiver<Assignment>,
    shared: Shared,
    cancel: CancellationToken,
) {
    let first = rx.borrow().clone();
    let env = runtime.environment(&first);
    let mut r = Reconciler {
        env,
        scaler: Scaler::new(settings.scale_down_cooldown),
        client,
        settings,
        bucket: runtime.bucket().cloned(),
        shared,
        id: first.id,
        name: format!("{}/{}", first.tenant, first.name),
        applied: None,
        running: None,
        failed: None,
        attempts: (0, 0),
        retry_at: Instant::now(),
        last: None,
        counters: ReconcileCounters::default(),
        idleness: None,
        idle_checked: None,
        logs_registered: false,
        log_home: None,
        log_disk: None,
    };
    loop {
        let a = rx.borrow_and_update().clone();
        let action = match r.reconcile(&a).await {
            Ok(action) => action,
            Err(failure) => r.error_policy(failure),
        };
        let wait = match action {
            Action::Done => return,
            Action::Requeue(wait) => wait,
        };
        tokio::select! {
            () = cancel.cancelled() => {
                r.shut_down().await;
                return;
            }
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// A reconcile step's span (exported as an OpenTelemetry trace when traces are on).
fn reconcile_span(step: &'static str, a: &Assignment) -> tracing::Span {
    tracing::info_span!(
        "reconcile",
        otel.name = %format_args!("reconcile {step}"),
        tenant = %a.tenant,
        env = %a.name,
        revision = a.revision,
        otel.status_code = tracing::field::Empty,
        error.category = tracing::field::Empty,
    )
}

/// Counts a failed reconcile step under `category` and marks its span as failed.
fn failure(span: &tracing::Span, counters: &mut ReconcileCounters, category: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.category", category);
    *counters.failures.entry(category.to_owned()).or_default() += 1;
}
