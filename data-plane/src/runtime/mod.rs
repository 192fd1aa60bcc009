//! What an environment's processes run on. Today: [`python`], the per-environment Python
//! runtime (a virtualenv per Airflow version and requirements, built with `uv`, cached and
//! shared by every environment with the same inputs).

pub mod python;
