//! What an environment's processes run on: [`python`], the per-environment Python runtime (a
//! virtualenv per Airflow version and requirements, built with `uv`, cached and shared by every
//! environment with the same inputs), and [`archive`], installed requirements as one archive in
//! the platform bucket (how Kubernetes pods get them).

pub mod archive;
pub mod python;
