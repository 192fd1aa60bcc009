//! Hangar's data plane. Built so far: the platform services a single machine runs for itself
//! ([`embedded`]: private Postgres and Redis), and the per-environment isolation on them
//! ([`metadata_db`]: a database and role per environment cloned from a migrated template;
//! [`broker`]: a Redis ACL user per environment confined to its key prefix), and the
//! [`supervisor`] of an environment's processes, the Python [`runtime`] each environment runs on
//! (a uv-built virtualenv per Airflow version and requirements, cached and shared), the
//! [`process_runtime`] that runs an environment on this machine, and the [`agent`] that reconciles
//! the environments assigned to this cell, and
//! [`log_ship`] captures their logs (live to the control plane, durably to the bucket). The [`autoscaler`]'s decisions are pure functions, which
//! the [`simulator`] replays multi-tenant traces through to compare worker policies. The
//! control plane reaches the cell's environments over the [`tunnel`] the agent opens.

pub mod agent;
pub mod autoscaler;
pub mod broker;
pub mod broker_gateway;
pub mod bucket;
pub mod bucket_gateway;
pub mod cell_runtime;
pub mod cli_runner;
pub mod dag_sync;
pub mod embedded;
pub mod health;
pub mod kubernetes;
pub mod log_ship;
pub mod metadata_db;
pub mod process_runtime;
pub mod runtime;
pub mod sandbox;
pub mod simulator;
pub mod supervisor;
pub mod task_pool;
pub mod tunnel;
