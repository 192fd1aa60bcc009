//! API tests: the real control plane against a real Postgres, a fresh database per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod airflow_cli;
mod airflow_proxy;
mod cells;
mod cli;
mod concurrency;
mod dags;
mod fuzz;
mod hibernation;
mod isolation;
mod lifecycle;
mod logs;
mod mwaa;
mod ops;
mod portal;
mod telemetry;
mod tenants;
mod tunnel;
mod validation;
mod warm_pool;
mod web_login;
