//! Hangar's pure domain, shared by the control plane, the data plane, the client and the tests:
//! validated names, the environment spec and its validation, lifecycle phases and how observed
//! state drives them, the JSON types of the API, and the verification of AWS SigV4 signatures
//! (for the MWAA-compatible API). Nothing here does I/O.

pub mod airflow_cli;
pub mod airflow_users;
pub mod api;
pub mod blueprint;
pub mod bucket_layout;
pub mod dag_path;
pub mod error;
pub mod names;
pub mod phase;
pub mod sigv4;
pub mod spec;
pub mod tunnel;
pub mod warm;

pub use error::{FieldError, FieldErrors};
pub use names::{CellName, EnvName, NameError, TenantName};
pub use phase::{
    derive_phase, idle_window_passed, phase_as_read, CellContact, ComponentStatus, DagSyncStatus,
    FailedApply, LogDiskFull, ObservedState, Phase, PhaseChange, ReconcileCounters, RefusedObject,
    WorkerStatus,
};
pub use spec::{
    AirflowVersion, EnvironmentClass, EnvironmentSpec, Executor, Platform, DEFAULT_AIRFLOW_VERSION,
    DEFAULT_HIBERNATE_AFTER_IDLE_MINUTES,
};
