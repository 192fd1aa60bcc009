//! Lifecycle phases (MWAA's names, plus hibernation) and the pure rule by which a data-plane
//! agent's observed state moves an environment from one phase to the next.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Creating,
    CreateFailed,
    Available,
    Updating,
    UpdateFailed,
    Unavailable,
    Deleting,
    Deleted,
    Hibernating,
    Hibernated,
}

impl Phase {
    pub const ALL: [Phase; 10] = [
        Phase::Creating,
        Phase::CreateFailed,
        Phase::Available,
        Phase::Updating,
        Phase::UpdateFailed,
        Phase::Unavailable,
        Phase::Deleting,
        Phase::Deleted,
        Phase::Hibernating,
        Phase::Hibernated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Creating => "CREATING",
            Phase::CreateFailed => "CREATE_FAILED",
            Phase::Available => "AVAILABLE",
            Phase::Updating => "UPDATING",
            Phase::UpdateFailed => "UPDATE_FAILED",
            Phase::Unavailable => "UNAVAILABLE",
            Phase::Deleting => "DELETING",
            Phase::Deleted => "DELETED",
            Phase::Hibernating => "HIBERNATING",
            Phase::Hibernated => "HIBERNATED",
        }
    }

    /// The phase an environment enters when a new revision of its spec is accepted, or `None`
    /// when it cannot be updated (being deleted, or gone).
    pub fn on_new_revision(self) -> Option<Phase> {
        match self {
            Phase::Creating | Phase::CreateFailed => Some(Phase::Creating),
            Phase::Available
            | Phase::Updating
            | Phase::UpdateFailed
            | Phase::Unavailable
            | Phase::Hibernating
            | Phase::Hibernated => Some(Phase::Updating),
            Phase::Deleting | Phase::Deleted => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown phase {0:?}")]
pub struct UnknownPhase(pub String);

impl FromStr for Phase {
    type Err = UnknownPhase;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPhase(s.to_owned()))
    }
}

/// Health of one component (api-server, scheduler-0, worker-2, …) as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentStatus {
    pub name: String,
    pub healthy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A revision the agent could not apply, and why (uv's resolver message, a failed migration …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailedApply {
    pub revision: i64,
    pub message: String,
}

/// What a data-plane agent reports about one environment it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObservedState {
    /// The revision whose components are running now; `None` when nothing runs yet.
    #[serde(default)]
    pub revision: Option<i64>,
    #[serde(default)]
    pub components: Vec<ComponentStatus>,
    /// Set when the newest revision could not be applied; the running revision keeps running.
    #[serde(default)]
    pub failed: Option<FailedApply>,
    /// Everything of a deleted environment is gone (processes, database, broker user, files).
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub endpoints: BTreeMap<String, String>,
    /// The DAG sync from the platform bucket, when the cell has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dag_sync: Option<DagSyncStatus>,
    /// The text of `requirements.txt` in the environment's bucket prefix, when there is one: a
    /// change of it becomes an update of the environment's `requirements`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_requirements: Option<String>,
    /// Task demand and workers, as the autoscaler sees them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkerStatus>,
    /// What the reconciler met since the cell's agent started (Prometheus counters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<ReconcileCounters>,
}

/// Counters of an environment's reconciler, since the cell's agent started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileCounters {
    /// Failed attempts by category: `requirements` (uv could not resolve them), `runtime`,
    /// `metadata_db`, `broker`, `processes`, `files`, `secrets`, `delete`.
    #[serde(default)]
    pub failures: BTreeMap<String, u64>,
    /// Syncs from the bucket that changed the DAG folder.
    #[serde(default)]
    pub dag_syncs_changed: u64,
    /// Syncs from the bucket that failed (the folder kept its last good state).
    #[serde(default)]
    pub dag_syncs_failed: u64,
}

/// An environment's task demand and Celery workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerStatus {
    /// Task instances queued for a worker.
    pub queued: u32,
    /// Task instances running.
    pub running: u32,
    /// Workers the autoscaler wants (within the pool's share and the environment's bounds).
    pub desired: u32,
    /// Workers running and taking tasks.
    pub actual: u32,
    /// Retired workers finishing their tasks.
    pub draining: u32,
    /// Scale-ups carried out since the cell's agent started.
    #[serde(default)]
    pub scale_ups: u64,
    /// Scale-downs (workers drained) carried out since the cell's agent started.
    #[serde(default)]
    pub scale_downs: u64,
}

/// How the environment's DAG folder follows its bucket prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagSyncStatus {
    /// Files in the DAG folder now.
    pub files: usize,
    /// Objects not synced because their key is not a safe relative path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedObject>,
    /// Why the last sync failed, if it did (the folder keeps its last good state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An object the DAG sync refused to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefusedObject {
    pub key: String,
    pub reason: String,
}

/// The phase that follows from a report, and the human message that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseChange {
    pub phase: Phase,
    pub message: Option<String>,
}

/// Decides an environment's phase from its current phase, its desired revision and deletion
/// intent, and what its agent observed. `AVAILABLE` only when the desired revision runs and
/// every component is healthy; a failed apply of a running environment is `UPDATE_FAILED`
/// (its previous revision keeps running), of a new one `CREATE_FAILED`.
pub fn derive_phase(
    current: Phase,
    desired_revision: i64,
    delete_requested: bool,
    observed: &ObservedState,
) -> PhaseChange {
    let keep = |message: Option<String>| PhaseChange {
        phase: current,
        message,
    };
    if current == Phase::Deleted {
        return keep(None);
    }
    if delete_requested {
        return if observed.deleted {
            PhaseChange {
                phase: Phase::Deleted,
                message: None,
            }
        } else {
            PhaseChange {
                phase: Phase::Deleting,
                message: Some("removing the environment's components and data".to_owned()),
            }
        };
    }
    if let Some(failed) = observed
        .failed
        .as_ref()
        .filter(|f| f.revision == desired_revision)
    {
        let phase = match observed.revision {
            Some(_) => Phase::UpdateFailed,
            None => Phase::CreateFailed,
        };
        return PhaseChange {
            phase,
            message: Some(failed.message.clone()),
        };
    }
    if observed.revision != Some(desired_revision) {
        return keep(Some(match observed.revision {
            Some(r) => format!("applying revision {desired_revision}; revision {r} is running"),
            None => format!("applying revision {desired_revision}"),
        }));
    }
    let unhealthy: Vec<String> = observed
        .components
        .iter()
        .filter(|c| !c.healthy)
        .map(|c| match &c.message {
            Some(m) => format!("{}: {m}", c.name),
            None => format!("{}: unhealthy", c.name),
        })
        .collect();
    if unhealthy.is_empty() && !observed.components.is_empty() {
        return PhaseChange {
            phase: Phase::Available,
            message: None,
        };
    }
    let detail = if unhealthy.is_empty() {
        "no components reported yet".to_owned()
    } else {
        unhealthy.join("; ")
    };
    match current {
        Phase::Available | Phase::Unavailable => PhaseChange {
            phase: Phase::Unavailable,
            message: Some(detail),
        },
        _ => keep(Some(format!("waiting for components: {detail}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn healthy(rev: i64) -> ObservedState {
        ObservedState {
            revision: Some(rev),
            components: vec![ComponentStatus {
                name: "scheduler-0".into(),
                healthy: true,
                message: None,
            }],
            ..Default::default()
        }
    }

    fn sick(rev: i64) -> ObservedState {
        let mut o = healthy(rev);
        o.components[0].healthy = false;
        o.components[0].message = Some("exited 1".into());
        o
    }

    fn failed(running: Option<i64>, rev: i64) -> ObservedState {
        ObservedState {
            revision: running,
            failed: Some(FailedApply {
                revision: rev,
                message: "uv: no solution".into(),
            }),
            ..Default::default()
        }
    }

    fn gone() -> ObservedState {
        ObservedState {
            deleted: true,
            ..Default::default()
        }
    }

    #[rstest]
    #[case::created(Phase::Creating, 1, false, healthy(1), Phase::Available)]
    #[case::still_starting(Phase::Creating, 1, false, sick(1), Phase::Creating)]
    #[case::nothing_yet(Phase::Creating, 1, false, ObservedState::default(), Phase::Creating)]
    #[case::create_failed(Phase::Creating, 1, false, failed(None, 1), Phase::CreateFailed)]
    #[case::updated(Phase::Updating, 2, false, healthy(2), Phase::Available)]
    #[case::old_still_running(Phase::Updating, 2, false, healthy(1), Phase::Updating)]
    #[case::update_failed(Phase::Updating, 2, false, failed(Some(1), 2), Phase::UpdateFailed)]
    #[case::stale_failure_ignored(Phase::Updating, 3, false, failed(Some(1), 2), Phase::Updating)]
    #[case::went_down(Phase::Available, 1, false, sick(1), Phase::Unavailable)]
    #[case::came_back(Phase::Unavailable, 1, false, healthy(1), Phase::Available)]
    #[case::deleting(Phase::Available, 2, true, healthy(1), Phase::Deleting)]
    #[case::deleted(Phase::Deleting, 2, true, gone(), Phase::Deleted)]
    #[case::deleted_is_final(Phase::Deleted, 2, false, healthy(2), Phase::Deleted)]
    fn observed_state_drives_the_phase(
        #[case] current: Phase,
        #[case] desired: i64,
        #[case] delete: bool,
        #[case] observed: ObservedState,
        #[case] expected: Phase,
    ) {
        assert_eq!(
            derive_phase(current, desired, delete, &observed).phase,
            expected
        );
    }

    #[test]
    fn update_failed_carries_the_agents_message() {
        let c = derive_phase(Phase::Updating, 2, false, &failed(Some(1), 2));
        assert_eq!(c.message.as_deref(), Some("uv: no solution"));
    }

    #[rstest]
    #[case(Phase::Available, Some(Phase::Updating))]
    #[case(Phase::UpdateFailed, Some(Phase::Updating))]
    #[case(Phase::CreateFailed, Some(Phase::Creating))]
    #[case(Phase::Creating, Some(Phase::Creating))]
    #[case(Phase::Deleting, None)]
    #[case(Phase::Deleted, None)]
    fn a_new_revision_moves_the_phase(#[case] from: Phase, #[case] to: Option<Phase>) {
        assert_eq!(from.on_new_revision(), to);
    }

    #[test]
    fn phase_names_round_trip() {
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(p));
        }
    }
}
