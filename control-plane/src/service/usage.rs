//! The shared pools' use over time: a sample a minute (each cell's slots and held workers,
//! each tenant's workers), and the last day of it for the platform page: each cell's pool
//! utilization and each tenant's worker-hours.

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use tokio_util::sync::CancellationToken;

use super::{ServiceError, Services, StoreContext};
use crate::auth::Actor;
use crate::persistence::usage as store;

/// How often the pools are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(60);
/// How long samples are kept.
const KEEP: chrono::Duration = chrono::Duration::days(8);

/// One cell's pool utilization over time.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSeries {
    pub cell: String,
    /// (minute, held workers / worker slots; 0 without slots).
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// The last day of the pools' use.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub pools: Vec<PoolSeries>,
    /// (tenant, worker-hours), most first.
    pub worker_hours: Vec<(String, f64)>,
}

impl Services {
    /// Takes this minute's sample (if no replica took it yet).
    pub async fn sample_usage(&self, now: DateTime<Utc>) -> Result<u64, ServiceError> {
        let minute = now
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap_or(now);
        store::sample(&self.db.pool, minute, now - KEEP)
            .await
            .store("sample the pools' use")
    }

    /// The pools' use over the `window` before `now` (platform admin).
    pub async fn usage(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<Usage, ServiceError> {
        self.require_platform_admin(actor)?;
        let since = now - window;
        let samples = store::pool_samples(&self.db.pool, since)
            .await
            .store("read the pools' samples")?;
        let mut pools: Vec<PoolSeries> = Vec::new();
        for s in samples {
            let u = if s.worker_slots > 0 {
                f64::from(s.workers) / f64::from(s.worker_slots)
            } else {
                0.0
            };
            match pools.last_mut() {
                Some(p) if p.cell == s.cell => p.points.push((s.at, u)),
                _ => pools.push(PoolSeries {
                    cell: s.cell,
                    points: vec![(s.at, u)],
                }),
            }
        }
        let worker_hours = store::tenant_worker_minutes(&self.db.pool, since)
            .await
            .store("read the tenants' worker samples")?
            .into_iter()
            .map(|t| (t.tenant, t.worker_minutes as f64 / 60.0))
            .collect();
        Ok(Usage {
            since,
            until: now,
            pools,
            worker_hours,
        })
    }
}

/// Samples the pools once a minute until `cancel`; a failed sample is logged and the next
/// minute tried again.
async fn sample_loop(services: std::sync::Arc<Services>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match services.sample_usage(Utc::now()).await {
            Ok(n) => tracing::debug!(rows = n, "sampled the pools' use"),
            Err(e) => tracing::warn!(error = %e, "failed to sample the pools' use"),
        }
    }
}

/// Runs the sampler until `cancel`, restarting it if it ever panics.
pub async fn supervise_sampler(services: std::sync::Arc<Services>, cancel: CancellationToken) {
    loop {
        let task = tokio::spawn(sample_loop(services.clone(), cancel.clone()));
        match task.await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, "the pool sampler stopped; restarting it");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
