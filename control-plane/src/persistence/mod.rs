//! The control plane's Postgres: this module owns the pool, the embedded migrations and one
//! function per query. Functions that must run inside a caller's transaction take a
//! `&mut PgConnection`; reads that stand alone take the pool.

pub mod access_keys;
pub mod audit;
pub mod cells;
pub mod cli_calls;
pub mod environments;
pub mod log_tail;
pub mod mwaa;
pub mod portal;
pub mod tenants;
pub mod tokens;
pub mod tunnels;
pub mod usage;
pub mod web_logins;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

pub use sqlx::PgConnection;

/// The migrations of `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("failed to parse the database URL")]
    ParseUrl(#[source] sqlx::Error),
    #[error("failed to connect to the database")]
    Connect(#[source] sqlx::Error),
    #[error("failed to run database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The pool, cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: PgPool,
}

impl Db {
    pub async fn connect(url: &SecretString, max_connections: u32) -> Result<Self, DbError> {
        let options: PgConnectOptions = url.expose_secret().parse().map_err(DbError::ParseUrl)?;
        let options = options.application_name("hangar");
        // One direct connection first: a wrong address or password fails at once with its own
        // message, not as a pool time-out.
        use sqlx::Connection;
        sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(DbError::Connect)?
            .close()
            .await
            .map_err(DbError::Connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(DbError::Connect)?;
        Ok(Self { pool })
    }

    pub async fn migrate(&self) -> Result<(), DbError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// `SELECT 1`: the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query!("SELECT 1 AS one")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }
}

/// The name of the constraint a unique violation broke, if the error is one.
pub fn unique_violation(err: &sqlx::Error) -> Option<String> {
    let db = err.as_database_error()?;
    if db.is_unique_violation() {
        Some(db.constraint().unwrap_or_default().to_owned())
    } else {
        None
    }
}
