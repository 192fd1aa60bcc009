//! Platform services started from the system's own binaries, private to one Hangar (or one
//! test run): they listen on loopback only, on a free port, with password authentication.

pub mod postgres;

pub use postgres::{PostgresError, PrivatePostgres};
