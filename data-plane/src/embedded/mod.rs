//! Platform services started from the system's own binaries, private to one Hangar (or one
//! test run): they listen on loopback only, on a free port, with password authentication.

pub mod postgres;
pub mod redis;

pub use postgres::{PostgresError, PrivatePostgres};
pub use redis::{PrivateRedis, RedisError};

/// A free TCP port on loopback (free when asked; the server binds it right after).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
