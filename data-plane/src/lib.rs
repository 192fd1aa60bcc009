//! Hangar's data plane. Today: the platform services a single machine runs for itself
//! ([`embedded`]), used by the test harness and the benchmarks; the agent and its runtimes
//! follow (issue 3).

pub mod embedded;
