//! Runtimes an environment runs on. Today: its Python runtime ([`python`]).

pub mod python;
