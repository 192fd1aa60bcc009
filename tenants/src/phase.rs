//! Lifecycle phases (MWAA's names, plus hibernation), the pure rule by which a data-plane
//! agent's observed state moves an environment from one phase to the next, and the rule by which
//! an environment reads while its cell's agent is silent.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

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

    /// The phase an environment reads as while its cell's agent is silent (see
    /// [`phase_as_read`]). Phases that say the environment runs (`AVAILABLE`, `UNAVAILABLE`,
    /// and `UPDATE_FAILED`, whose previous revision keeps running) read `UNAVAILABLE`: nobody
    /// can tell whether anything runs. Every other phase stays: the transitional ones
    /// (`CREATING`, `UPDATING`, `DELETING`, `HIBERNATING`) are the platform's intent, which the
    /// agent carries out when it is back; `CREATE_FAILED` and `HIBERNATED` run nothing anyway,
    /// and `DELETED` is final.
    pub fn while_cell_silent(self) -> Phase {
        match self {
            Phase::Available | Phase::Unavailable | Phase::UpdateFailed => Phase::Unavailable,
            Phase::Creating
            | Phase::CreateFailed
            | Phase::Updating
            | Phase::Deleting
            | Phase::Deleted
            | Phase::Hibernating
            | Phase::Hibernated => self,
        }
    }

    /// The platform waits for the cell's agent to finish something in this phase.
    fn is_transitional(self) -> bool {
        matches!(
            self,
            Phase::Creating | Phase::Updating | Phase::Deleting | Phase::Hibernating
        )
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
    /// The environment hibernates: none of its processes runs, its data is kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hibernated: bool,
    /// Awake with nothing queued, running or deferred: since when, as far as this agent has
    /// seen (it starts counting afresh when it starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_since: Option<chrono::DateTime<chrono::Utc>>,
    /// When its next scheduled DAG run is due, as its scheduler has it (read while idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<chrono::DateTime<chrono::Utc>>,
    /// Set while the disk under its log folders is full: its tasks keep running, but log lines
    /// written meanwhile are dropped (a task log says how many once there is room again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_disk: Option<LogDiskFull>,
}

/// The disk under an environment's log folders is full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogDiskFull {
    /// Since when, as far as the cell's agent has seen.
    pub since: chrono::DateTime<chrono::Utc>,
    /// The full folders: `tasks` (the task logs Airflow writes) and `components` (what each
    /// component prints).
    pub folders: Vec<String>,
}

/// Whether an awake environment has been idle for its whole idle window (`None`: it never
/// hibernates by itself): nothing queued, running or deferred for the window, no use of it
/// through Hangar for the window (`last_used`), and no scheduled DAG run due within the
/// window from now. Such an environment is asked to hibernate; it still wakes ahead of its
/// next scheduled run.
pub fn idle_window_passed(
    window: Option<chrono::TimeDelta>,
    observed: &ObservedState,
    last_used: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let (Some(window), Some(idle_since)) = (window, observed.idle_since) else {
        return false;
    };
    if observed.hibernated || observed.revision.is_none() {
        return false;
    }
    let quiet_since = last_used.map_or(idle_since, |used| used.max(idle_since));
    now - quiet_since >= window && observed.next_run.is_none_or(|due| due - now >= window)
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
    /// Restarts that loaded changed plugins (every component that loads them restarted).
    #[serde(default)]
    pub plugin_restarts: u64,
}

/// An environment's task demand and Celery workers; with the `hangar` executor, its tasks
/// waiting for and holding slots of its cell's task pool, and no workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerStatus {
    /// Task instances queued for a worker (`hangar`: waiting in the task pool).
    pub queued: u32,
    /// Task instances running (`hangar`: holding a slot of the task pool).
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

/// Decides an environment's phase from its current phase, its desired revision, deletion and
/// hibernation intents, and what its agent observed. `AVAILABLE` only when the desired revision
/// runs and every component is healthy; a failed apply of a running environment is
/// `UPDATE_FAILED` (its previous revision keeps running), of a new one `CREATE_FAILED`. Asked to
/// hibernate, it is `HIBERNATING` until its agent says nothing of it runs (`HIBERNATED`); woken,
/// it keeps its phase until it is back.
pub fn derive_phase(
    current: Phase,
    desired_revision: i64,
    delete_requested: bool,
    hibernate: bool,
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
    if hibernate {
        return if observed.hibernated {
            PhaseChange {
                phase: Phase::Hibernated,
                message: None,
            }
        } else {
            PhaseChange {
                phase: Phase::Hibernating,
                message: Some(
                    "stopping its processes once no DAG run is queued or running".to_owned(),
                ),
            }
        };
    }
    if observed.hibernated {
        return keep(Some("waking up".to_owned()));
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

/// When an environment's cell was last heard from: its name, and how long its agent has been
/// silent (no registration, poll or report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellContact<'a> {
    pub cell: &'a str,
    pub silent_for: Duration,
}

impl CellContact<'_> {
    /// Silent for `ttl` (`HANGAR_CELL_TTL_SECS`) or longer: its agent may be down, and its
    /// environments' last reports no longer say how they are.
    pub fn is_lost(&self, ttl: Duration) -> bool {
        self.silent_for >= ttl
    }
}

/// The phase and message an environment reads as: what its agent's reports made of it
/// (`stored`), unless its cell (`contact`, `None` when it has none) has been silent for `ttl`
/// or longer. Then the phase is [`Phase::while_cell_silent`] and the message names the cell
/// and how long it has been silent; `CREATE_FAILED` and `DELETED` keep their own message.
///
/// Computed at every read, not stored, so nothing has to notice the silence and nothing has
/// to undo it: once the agent registers, polls or reports again, the environment reads as its
/// reports made it (an agent that restarted reports afresh within seconds of its first poll).
pub fn phase_as_read(
    stored: PhaseChange,
    contact: Option<CellContact<'_>>,
    ttl: Duration,
) -> PhaseChange {
    let Some(contact) = contact.filter(|c| c.is_lost(ttl)) else {
        return stored;
    };
    if matches!(stored.phase, Phase::CreateFailed | Phase::Deleted) {
        return stored;
    }
    let silence = format!(
        "has not reported for {}; its agent may be down",
        human_duration(contact.silent_for)
    );
    let message = if stored.phase.is_transitional() {
        format!("waiting for cell {}, which {silence}", contact.cell)
    } else {
        format!("cell {} {silence}", contact.cell)
    };
    PhaseChange {
        phase: stored.phase.while_cell_silent(),
        message: Some(message),
    }
}

/// A duration as a person says it, rounded down: `45 s`, `3 min`, `5 h`, `2 days`.
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s} s"),
        120..7_200 => format!("{} min", s / 60),
        7_200..172_800 => format!("{} h", s / 3_600),
        _ => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn at(minute: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::UNIX_EPOCH + chrono::TimeDelta::minutes(minute)
    }

    #[rstest]
    // Idle for the whole hour, never used, nothing scheduled.
    #[case(Some(60), Some(0), None, None, 60, true)]
    #[case(Some(60), Some(0), None, None, 59, false)]
    // Never hibernates by itself; not idle.
    #[case(None, Some(0), None, None, 600, false)]
    #[case(Some(60), None, None, None, 600, false)]
    // A use restarts the window.
    #[case(Some(60), Some(0), Some(30), None, 60, false)]
    #[case(Some(60), Some(0), Some(30), None, 90, true)]
    // A use before it went idle does not count.
    #[case(Some(60), Some(10), Some(0), None, 70, true)]
    // A DAG run due within the window keeps it up; one due later does not.
    #[case(Some(60), Some(0), None, Some(100), 60, false)]
    #[case(Some(60), Some(0), None, Some(120), 60, true)]
    // The window of a test stack: 1 minute.
    #[case(Some(1), Some(0), None, Some(3), 1, true)]
    fn an_environment_hibernates_after_a_whole_idle_window(
        #[case] window_minutes: Option<i64>,
        #[case] idle_since: Option<i64>,
        #[case] last_used: Option<i64>,
        #[case] next_run: Option<i64>,
        #[case] now: i64,
        #[case] expected: bool,
    ) {
        let observed = ObservedState {
            revision: Some(1),
            idle_since: idle_since.map(at),
            next_run: next_run.map(at),
            ..Default::default()
        };
        assert_eq!(
            idle_window_passed(
                window_minutes.map(chrono::TimeDelta::minutes),
                &observed,
                last_used.map(at),
                at(now)
            ),
            expected
        );
    }

    #[test]
    fn an_environment_asleep_or_not_running_is_not_idle() {
        let asleep = ObservedState {
            revision: Some(1),
            hibernated: true,
            idle_since: Some(at(0)),
            ..Default::default()
        };
        let window = Some(chrono::TimeDelta::minutes(1));
        assert!(!idle_window_passed(window, &asleep, None, at(10)));
        let starting = ObservedState {
            idle_since: Some(at(0)),
            ..Default::default()
        };
        assert!(!idle_window_passed(window, &starting, None, at(10)));
    }

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

    fn hibernated(rev: i64) -> ObservedState {
        ObservedState {
            revision: Some(rev),
            hibernated: true,
            ..Default::default()
        }
    }

    #[rstest]
    #[case::asked_while_busy(Phase::Available, 1, true, healthy(1), Phase::Hibernating)]
    #[case::asleep(Phase::Hibernating, 1, true, hibernated(1), Phase::Hibernated)]
    #[case::stays_asleep(Phase::Hibernated, 1, true, hibernated(1), Phase::Hibernated)]
    #[case::waking(Phase::Hibernated, 1, false, hibernated(1), Phase::Hibernated)]
    #[case::woken_starting(Phase::Hibernated, 1, false, sick(1), Phase::Hibernated)]
    #[case::awake(Phase::Hibernated, 1, false, healthy(1), Phase::Available)]
    #[case::woken_by_an_update(Phase::Updating, 2, false, healthy(2), Phase::Available)]
    fn hibernation_drives_the_phase(
        #[case] current: Phase,
        #[case] desired: i64,
        #[case] hibernate: bool,
        #[case] observed: ObservedState,
        #[case] expected: Phase,
    ) {
        assert_eq!(
            derive_phase(current, desired, false, hibernate, &observed).phase,
            expected
        );
        // Deleting wins over hibernating.
        assert_eq!(
            derive_phase(current, desired, true, hibernate, &observed).phase,
            Phase::Deleting
        );
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
            derive_phase(current, desired, delete, false, &observed).phase,
            expected
        );
    }

    #[test]
    fn update_failed_carries_the_agents_message() {
        let c = derive_phase(Phase::Updating, 2, false, false, &failed(Some(1), 2));
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

    fn stored(phase: Phase) -> PhaseChange {
        PhaseChange {
            phase,
            message: Some("as reported".to_owned()),
        }
    }

    fn local(secs: u64) -> Option<CellContact<'static>> {
        Some(CellContact {
            cell: "local",
            silent_for: Duration::from_secs(secs),
        })
    }

    const TTL: Duration = Duration::from_secs(120);
    const DOWN: &str = "cell local has not reported for 3 min; its agent may be down";
    const WAITING: &str =
        "waiting for cell local, which has not reported for 3 min; its agent may be down";

    #[rstest]
    #[case::heard_from(Phase::Available, local(119), Phase::Available, "as reported")]
    #[case::no_cell(Phase::Creating, None, Phase::Creating, "as reported")]
    #[case::at_the_ttl(
        Phase::Available,
        local(120),
        Phase::Unavailable,
        "cell local has not reported for 2 min; its agent may be down"
    )]
    #[case::available(Phase::Available, local(180), Phase::Unavailable, DOWN)]
    #[case::unavailable(Phase::Unavailable, local(180), Phase::Unavailable, DOWN)]
    #[case::update_failed(Phase::UpdateFailed, local(180), Phase::Unavailable, DOWN)]
    #[case::hibernated(Phase::Hibernated, local(180), Phase::Hibernated, DOWN)]
    #[case::creating(Phase::Creating, local(180), Phase::Creating, WAITING)]
    #[case::updating(Phase::Updating, local(180), Phase::Updating, WAITING)]
    #[case::deleting(Phase::Deleting, local(180), Phase::Deleting, WAITING)]
    #[case::hibernating(Phase::Hibernating, local(180), Phase::Hibernating, WAITING)]
    #[case::create_failed(Phase::CreateFailed, local(180), Phase::CreateFailed, "as reported")]
    #[case::deleted(Phase::Deleted, local(180), Phase::Deleted, "as reported")]
    fn a_silent_cell_changes_how_its_environments_read(
        #[case] phase: Phase,
        #[case] contact: Option<CellContact<'static>>,
        #[case] expected: Phase,
        #[case] message: &str,
    ) {
        let read = phase_as_read(stored(phase), contact, TTL);
        assert_eq!(read.phase, expected);
        assert_eq!(read.message.as_deref(), Some(message));
    }

    #[test]
    fn a_heard_from_cell_keeps_an_empty_message_empty() {
        let available = PhaseChange {
            phase: Phase::Available,
            message: None,
        };
        assert_eq!(phase_as_read(available.clone(), local(5), TTL), available);
    }

    #[rstest]
    #[case(0, "0 s")]
    #[case(119, "119 s")]
    #[case(120, "2 min")]
    #[case(7_199, "119 min")]
    #[case(7_200, "2 h")]
    #[case(172_799, "47 h")]
    #[case(172_800, "2 days")]
    fn silences_read_as_a_person_says_them(#[case] secs: u64, #[case] says: &str) {
        assert_eq!(human_duration(Duration::from_secs(secs)), says);
    }
}
