//! Hangar's control plane: the source of truth for tenants, environments and cells, served as
//! a REST API, plus the `hangar` command line client.

pub mod agent_cmd;
pub mod api;
pub mod auth;
pub mod bucket_source;
pub mod changes;
pub mod cli;
pub mod dag_sync_cmd;
pub mod dev;
pub mod manifests_cmd;
pub mod mwaa;
pub mod persistence;
pub mod portal;
pub mod relay;
pub mod requirements_cmd;
pub mod secrets;
pub mod service;
pub mod settings;
pub mod simulate_cmd;
pub mod startup;
pub mod telemetry;
pub mod tunnel;
pub mod ui_domain;
