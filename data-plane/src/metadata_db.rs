//! Each environment's Airflow metadata database on a shared Postgres: its own database and
//! login role, cloned in ~0.1 s from a template that `airflow db migrate` filled once per Airflow
//! version (instead of ~12 s of migrations per environment), with `CONNECT` revoked from
//! `PUBLIC` so no other environment's role can even connect.
//!
//! Ownership: objects in a clone keep the owner they had in the template. The template's schema
//! objects are therefore owned by a dedicated role ([`TEMPLATE_OWNER`], able to log in only
//! while a template is being migrated), and each clone hands them to its environment's role
//! with `REASSIGN OWNED`. The template database itself stays owned by the admin, so that
//! reassignment never moves it.
//!
//! The admin need not be a superuser: `CREATEDB` and `CREATEROLE` are enough (what managed
//! Postgres gives its admin: RDS's `rds_superuser`, Cloud SQL's `cloudsqlsuperuser`, Azure's
//! `azure_pg_admin`). It makes itself a member of each role it creates, which is what cloning a
//! database for another owner, `REASSIGN OWNED` and closing a role's connections need.

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// Owns every object inside the templates.
pub const TEMPLATE_OWNER: &str = "hangar_template_owner";
/// Marks a template whose migration finished.
const COMPLETE: &str = "hangar template: complete";

#[derive(Debug, thiserror::Error)]
pub enum MetadataDbError {
    #[error("failed to connect to the platform Postgres as its admin")]
    Connect(#[source] sqlx::Error),
    #[error("failed to {action} for database {database}")]
    Sql {
        action: &'static str,
        database: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("failed to migrate template {template}: {message}")]
    Migrate { template: String, message: String },
    #[error("password for {role} must be alphanumeric")]
    BadPassword { role: String },
}

/// One environment's database and the role that owns it.
#[derive(Debug, Clone)]
pub struct EnvDatabase {
    pub name: String,
    pub role: String,
    pub password: SecretString,
}

impl EnvDatabase {
    /// Database and role of an environment, from its id (a re-created environment of the same
    /// name never sees old metadata).
    pub fn for_environment(env: Uuid, password: SecretString) -> Self {
        let name = format!("env_{}", env.simple());
        Self {
            role: name.clone(),
            name,
            password,
        }
    }

    /// The database as its own role reaches it (generated passwords are alphanumeric, so they
    /// need no escaping in a URL), over TLS when `tls` says so.
    pub fn url(&self, host: &str, port: u16, tls: PgTls) -> SecretString {
        SecretString::from(format!(
            "postgres://{}:{}@{host}:{port}/{}{}",
            self.role,
            self.password.expose_secret(),
            self.name,
            tls.query()
        ))
    }

    /// The SQLAlchemy URL Airflow connects with.
    pub fn sqlalchemy_url(&self, host: &str, port: u16, tls: PgTls) -> SecretString {
        SecretString::from(format!(
            "postgresql+psycopg2://{}:{}@{host}:{port}/{}{}",
            self.role,
            self.password.expose_secret(),
            self.name,
            tls.query()
        ))
    }
}

/// Whether environments (and the agent on their behalf) connect to the platform Postgres over
/// TLS: when the agent's own admin URL asks for it (`sslmode=require`, `verify-ca` or
/// `verify-full`). They then use `sslmode=require` (encrypted; the server's certificate is not
/// checked, as its CA is not in the environments' runtimes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgTls {
    Off,
    Require,
}

impl PgTls {
    fn query(self) -> &'static str {
        match self {
            Self::Off => "",
            Self::Require => "?sslmode=require",
        }
    }
}

/// A template database's name for an Airflow version (`3.3.2` → `hangar_tpl_3_3_2`).
pub fn template_name(airflow_version: &str) -> String {
    let v: String = airflow_version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("hangar_tpl_{v}")
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn password_literal(role: &str, p: &SecretString) -> Result<String, MetadataDbError> {
    let p = p.expose_secret();
    if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(MetadataDbError::BadPassword {
            role: role.to_owned(),
        });
    }
    Ok(format!("'{p}'"))
}

/// Creates, clones and drops databases on one Postgres, as its admin (a superuser).
#[derive(Debug, Clone)]
pub struct MetadataDbAdmin {
    pool: PgPool,
    options: PgConnectOptions,
}

impl MetadataDbAdmin {
    /// `admin_url` names the admin's maintenance database (usually `postgres`).
    pub async fn connect(admin_url: &SecretString) -> Result<Self, MetadataDbError> {
        let options: PgConnectOptions = admin_url
            .expose_secret()
            .parse()
            .map_err(MetadataDbError::Connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(MetadataDbError::Connect)?;
        Ok(Self { pool, options })
    }

    /// How environments connect, as the admin connection does.
    pub fn tls(&self) -> PgTls {
        use sqlx::postgres::PgSslMode;
        match self.options.get_ssl_mode() {
            PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => PgTls::Require,
            PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer => PgTls::Off,
        }
    }

    async fn exec(
        &self,
        action: &'static str,
        database: &str,
        sql: &str,
    ) -> Result<(), MetadataDbError> {
        sqlx::query(sql)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|source| MetadataDbError::Sql {
                action,
                database: database.to_owned(),
                source,
            })
    }

    /// A direct admin connection to another database of the server.
    async fn connect_to(&self, database: &str) -> Result<PgConnection, MetadataDbError> {
        PgConnection::connect_with(&self.options.clone().database(database))
            .await
            .map_err(|source| MetadataDbError::Sql {
                action: "connect",
                database: database.to_owned(),
                source,
            })
    }

    async fn role_exists(&self, role: &str) -> Result<bool, MetadataDbError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&self.pool)
            .await
            .map_err(|source| MetadataDbError::Sql {
                action: "look up a role",
                database: role.to_owned(),
                source,
            })
    }

    /// The database's comment, if the database exists.
    async fn database_comment(
        &self,
        database: &str,
    ) -> Result<Option<Option<String>>, MetadataDbError> {
        sqlx::query_scalar(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
        )
        .bind(database)
        .fetch_optional(&self.pool)
        .await
        .map_err(|source| MetadataDbError::Sql {
            action: "look up a database",
            database: database.to_owned(),
            source,
        })
    }

    /// Whether the template of this name exists and finished migrating.
    pub async fn template_ready(&self, template: &str) -> Result<bool, MetadataDbError> {
        Ok(self.database_comment(template).await?.flatten().as_deref() == Some(COMPLETE))
    }

    /// Makes the template if it is not ready: an empty database, then `migrate` is called with
    /// a URL (as [`TEMPLATE_OWNER`]) to fill it, then it is sealed against connections. A
    /// template left half-migrated by a crash is dropped and made again. Every caller, in any
    /// process, takes the same advisory lock first, so one makes it while the others wait.
    pub async fn ensure_template<F, Fut>(
        &self,
        template: &str,
        migrate: F,
    ) -> Result<(), MetadataDbError>
    where
        F: FnOnce(SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        if self.template_ready(template).await? {
            return Ok(());
        }
        // Held on a connection of its own for as long as the template is being made.
        let mut lock = self.connect_to("postgres").await?;
        let key = format!("hangar-template:{template}");
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
            .bind(&key)
            .execute(&mut lock)
            .await
            .map_err(|source| MetadataDbError::Sql {
                action: "lock the template",
                database: template.to_owned(),
                source,
            })?;
        let made = self.make_template(template, migrate).await;
        let _ = lock.close().await;
        made
    }

    async fn make_template<F, Fut>(&self, template: &str, migrate: F) -> Result<(), MetadataDbError>
    where
        F: FnOnce(SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        if self.template_ready(template).await? {
            return Ok(());
        }
        if self.database_comment(template).await?.is_some() {
            self.exec(
                "allow connections to drop",
                template,
                &format!(
                    "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true IS_TEMPLATE false",
                    ident(template)
                ),
            )
            .await?;
            self.exec(
                "drop a half-made template",
                template,
                &format!("DROP DATABASE {} WITH (FORCE)", ident(template)),
            )
            .await?;
        }
        let password = SecretString::from(uuid::Uuid::new_v4().simple().to_string());
        let pw = password_literal(TEMPLATE_OWNER, &password)?;
        let owner_sql = if self.role_exists(TEMPLATE_OWNER).await? {
            format!("ALTER ROLE {} LOGIN PASSWORD {pw}", ident(TEMPLATE_OWNER))
        } else {
            format!("CREATE ROLE {} LOGIN PASSWORD {pw}", ident(TEMPLATE_OWNER))
        };
        self.exec("prepare the template owner", template, &owner_sql)
            .await?;
        self.exec(
            "join the template owner",
            template,
            &format!("GRANT {} TO CURRENT_USER", ident(TEMPLATE_OWNER)),
        )
        .await?;
        self.exec(
            "create a template",
            template,
            &format!("CREATE DATABASE {}", ident(template)),
        )
        .await?;
        self.exec(
            "let the template owner connect",
            template,
            &format!(
                "GRANT CONNECT, TEMP ON DATABASE {} TO {}",
                ident(template),
                ident(TEMPLATE_OWNER)
            ),
        )
        .await?;
        let mut conn = self.connect_to(template).await?;
        sqlx::query(&format!(
            "GRANT ALL ON SCHEMA public TO {}",
            ident(TEMPLATE_OWNER)
        ))
        .execute(&mut conn)
        .await
        .map_err(|source| MetadataDbError::Sql {
            action: "grant the template's schema",
            database: template.to_owned(),
            source,
        })?;
        let _ = conn.close().await;
        let host = self.options.get_host().to_owned();
        let url = SecretString::from(format!(
            "postgresql+psycopg2://{TEMPLATE_OWNER}:{}@{host}:{}/{template}{}",
            password.expose_secret(),
            self.options.get_port(),
            self.tls().query()
        ));
        let migrated = migrate(url).await;
        // Whatever happened, the owner may not log in outside a migration.
        self.exec(
            "lock the template owner",
            template,
            &format!("ALTER ROLE {} NOLOGIN", ident(TEMPLATE_OWNER)),
        )
        .await?;
        migrated.map_err(|message| MetadataDbError::Migrate {
            template: template.to_owned(),
            message,
        })?;
        // No connection may stay open on a template, or cloning it fails.
        self.exec(
            "seal the template",
            template,
            &format!(
                "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                ident(template)
            ),
        )
        .await?;
        self.exec("close the template's connections", template, &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{template}'")).await?;
        self.exec(
            "mark the template complete",
            template,
            &format!("COMMENT ON DATABASE {} IS '{COMPLETE}'", ident(template)),
        )
        .await
    }

    /// Creates the environment's role and its clone of `template` (idempotent: an existing
    /// database is kept, the role's password is reset to the given one).
    pub async fn ensure_database(
        &self,
        db: &EnvDatabase,
        template: &str,
    ) -> Result<(), MetadataDbError> {
        let pw = password_literal(&db.role, &db.password)?;
        let role_sql = if self.role_exists(&db.role).await? {
            format!("ALTER ROLE {} LOGIN PASSWORD {pw}", ident(&db.role))
        } else {
            format!("CREATE ROLE {} LOGIN PASSWORD {pw}", ident(&db.role))
        };
        self.exec("create the environment's role", &db.name, &role_sql)
            .await?;
        self.exec(
            "join the environment's role",
            &db.name,
            &format!("GRANT {} TO CURRENT_USER", ident(&db.role)),
        )
        .await?;
        if self.database_comment(&db.name).await?.is_none() {
            self.exec(
                "clone the template",
                &db.name,
                &format!(
                    "CREATE DATABASE {} TEMPLATE {} OWNER {}",
                    ident(&db.name),
                    ident(template),
                    ident(&db.role)
                ),
            )
            .await?;
        }
        self.exec(
            "revoke connect from PUBLIC",
            &db.name,
            &format!(
                "REVOKE CONNECT, TEMP ON DATABASE {} FROM PUBLIC",
                ident(&db.name)
            ),
        )
        .await?;
        self.exec(
            "grant connect to its role",
            &db.name,
            &format!(
                "GRANT CONNECT, TEMP ON DATABASE {} TO {}",
                ident(&db.name),
                ident(&db.role)
            ),
        )
        .await?;
        let mut conn = self.connect_to(&db.name).await?;
        // `DROP OWNED` revokes the template owner's rights on shared catalog rows too, which
        // other clones being made at the same time (by this agent or another sharing the
        // server) update as well: Postgres then refuses one with "tuple concurrently updated".
        // Both statements are idempotent: tried again, a little later.
        let mut attempt = 1;
        let handed = loop {
            match hand_over(&mut conn, &db.role).await {
                Err((_, e)) if attempt < HAND_OVER_ATTEMPTS && concurrently_updated(&e) => {
                    tracing::debug!(database = %db.name, attempt, "a catalog row was updated at the same time; trying again");
                    let jitter = rand::random::<u64>() % 50;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt + jitter))
                        .await;
                    attempt += 1;
                }
                other => break other,
            }
        };
        let _ = conn.close().await;
        handed.map_err(|(action, source)| MetadataDbError::Sql {
            action,
            database: db.name.clone(),
            source,
        })
    }

    /// Drops the environment's database (closing its connections) and role. Idempotent.
    pub async fn drop_database(&self, db: &EnvDatabase) -> Result<(), MetadataDbError> {
        self.exec(
            "drop the database",
            &db.name,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&db.name)),
        )
        .await?;
        self.exec(
            "drop the role",
            &db.name,
            &format!("DROP ROLE IF EXISTS {}", ident(&db.role)),
        )
        .await
    }
}

/// How often a clone's hand-over is tried when a catalog row it updates was updated at once.
const HAND_OVER_ATTEMPTS: u64 = 6;

/// Hands the template's objects in a fresh clone to its environment's role and drops the
/// template owner's grants, in one transaction; an error comes with what failed.
async fn hand_over(conn: &mut PgConnection, role: &str) -> Result<(), (&'static str, sqlx::Error)> {
    let mut tx = conn.begin().await.map_err(|e| ("begin", e))?;
    for (action, sql) in [
        (
            "hand the template's objects to the role",
            format!(
                "REASSIGN OWNED BY {} TO {}",
                ident(TEMPLATE_OWNER),
                ident(role)
            ),
        ),
        (
            "drop the template owner's grants",
            format!("DROP OWNED BY {}", ident(TEMPLATE_OWNER)),
        ),
    ] {
        sqlx::query(&sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| (action, e))?;
    }
    tx.commit()
        .await
        .map_err(|e| ("hand the template's objects to the role", e))
}

/// Postgres' refusal of a catalog update that raced another (`XX000`, no SQLSTATE of its own).
fn concurrently_updated(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().as_deref() == Some("XX000") && d.message().contains("tuple concurrently updated")
    })
}

/// A connection to one environment's own database, as its own role, for what the agent reads
/// there: the task signal the autoscaler scales on (what MWAA and the Airflow Helm chart scale
/// on) and which worker runs which task. Made when first needed, made again after a failure.
#[derive(Default)]
pub struct EnvTasks {
    conn: Option<PgConnection>,
}

impl EnvTasks {
    /// Queued and running task instances.
    pub async fn counts(&mut self, url: &SecretString) -> Result<(u32, u32), sqlx::Error> {
        let row: Result<(i64, i64), sqlx::Error> = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'queued'),
                    count(*) FILTER (WHERE state = 'running')
             FROM task_instance WHERE state IN ('queued', 'running')",
        )
        .fetch_one(self.connection(url).await?)
        .await;
        let (queued, running) = self.kept(row)?;
        Ok((saturating_u32(queued), saturating_u32(running)))
    }

    /// Whether nothing is to run: no DAG run queued or running, no task instance scheduled,
    /// queued, running, deferred, waiting to be rescheduled or restarting.
    pub async fn idle(&mut self, url: &SecretString) -> Result<bool, sqlx::Error> {
        let row: Result<(i64,), sqlx::Error> = sqlx::query_as(
            "SELECT (SELECT count(*) FROM dag_run WHERE state IN ('queued', 'running'))
                  + (SELECT count(*) FROM task_instance
                     WHERE state IN ('scheduled', 'queued', 'running', 'deferred',
                                     'up_for_reschedule', 'restarting'))",
        )
        .fetch_one(self.connection(url).await?)
        .await;
        let (busy,) = self.kept(row)?;
        Ok(busy == 0)
    }

    /// Whether the environment has a trigger for its triggerer to run: a deferred task's, an
    /// asset watcher's, a callback's.
    pub async fn has_triggers(&mut self, url: &SecretString) -> Result<bool, sqlx::Error> {
        let row: Result<(bool,), sqlx::Error> =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM trigger)")
                .fetch_one(self.connection(url).await?)
                .await;
        Ok(self.kept(row)?.0)
    }

    /// When the scheduler creates the next DAG run (the earliest `next_dagrun_create_after` of
    /// the DAGs it would schedule: unpaused, not stale, importable, not at their run limit),
    /// if any DAG has a schedule.
    pub async fn next_run_due(
        &mut self,
        url: &SecretString,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
        let row: Result<(Option<chrono::DateTime<chrono::Utc>>,), sqlx::Error> = sqlx::query_as(
            "SELECT min(next_dagrun_create_after) FROM dag
             WHERE NOT is_paused AND NOT is_stale AND NOT has_import_errors
               AND NOT exceeds_max_non_backfill",
        )
        .fetch_one(self.connection(url).await?)
        .await;
        Ok(self.kept(row)?.0)
    }

    /// Running task instances per worker, by the hostname each reported (Celery's worker
    /// hostname: its pod's name on Kubernetes).
    pub async fn running_by_host(
        &mut self,
        url: &SecretString,
    ) -> Result<std::collections::HashMap<String, u32>, sqlx::Error> {
        let rows: Result<Vec<(String, i64)>, sqlx::Error> = sqlx::query_as(
            "SELECT hostname, count(*) FROM task_instance
             WHERE state = 'running' AND hostname IS NOT NULL AND hostname <> ''
             GROUP BY hostname",
        )
        .fetch_all(self.connection(url).await?)
        .await;
        Ok(self
            .kept(rows)?
            .into_iter()
            .map(|(host, n)| (host, saturating_u32(n)))
            .collect())
    }

    async fn connection(&mut self, url: &SecretString) -> Result<&mut PgConnection, sqlx::Error> {
        match &mut self.conn {
            Some(conn) => Ok(conn),
            slot => Ok(slot.insert(PgConnection::connect(url.expose_secret()).await?)),
        }
    }

    /// A failed query drops the connection (the next one connects again).
    fn kept<T>(&mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

fn saturating_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::embedded::PrivatePostgres;

    #[test]
    fn template_names_are_safe_identifiers() {
        assert_eq!(template_name("3.3.2"), "hangar_tpl_3_3_2");
        assert_eq!(template_name("3.4.0rc1"), "hangar_tpl_3_4_0rc1");
    }

    /// Stands in for `airflow db migrate`: creates a table as the template owner, through the
    /// URL it was given.
    async fn fake_migrate(url: SecretString) -> Result<(), String> {
        let url = url
            .expose_secret()
            .replace("postgresql+psycopg2://", "postgres://");
        let mut conn = PgConnection::connect(&url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("CREATE TABLE dag (dag_id text PRIMARY KEY)")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("INSERT INTO dag VALUES ('from-template')")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        conn.close().await.map_err(|e| e.to_string())
    }

    async fn connect_as(
        db: &EnvDatabase,
        as_role: &EnvDatabase,
        port: u16,
    ) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect(&format!(
            "postgres://{}:{}@127.0.0.1:{port}/{}",
            as_role.role,
            as_role.password.expose_secret(),
            db.name
        ))
        .await
    }

    /// A private Postgres in a folder of its own (kept as long as the folder is).
    async fn private_postgres() -> (tempfile::TempDir, PrivatePostgres) {
        PrivatePostgres::in_temp_dir("hangar-metadb-").await
    }

    #[tokio::test]
    async fn on_a_postgres_that_takes_tls_only_environments_connect_over_tls() {
        let (_tmp, pg) = private_postgres().await;
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        pg.require_tls(&cert.cert.pem(), &cert.key_pair.serialize_pem())
            .await
            .unwrap();
        let url = |mode: &str| {
            SecretString::from(format!(
                "{}?sslmode={mode}",
                pg.url("postgres").expose_secret()
            ))
        };
        let refused = MetadataDbAdmin::connect(&url("disable")).await.unwrap_err();
        assert!(
            format!("{:?}", refused).contains("no pg_hba.conf entry"),
            "{refused:?}"
        );
        // `prefer` gets TLS from this server, but environments are not told to insist on it.
        let preferred = MetadataDbAdmin::connect(&url("prefer")).await.unwrap();
        assert_eq!(preferred.tls(), PgTls::Off);
        let admin = MetadataDbAdmin::connect(&url("require")).await.unwrap();
        assert_eq!(admin.tls(), PgTls::Require);

        // The template's migration and the environment's database get TLS URLs, and work.
        let tpl = template_name("3.3.2");
        admin
            .ensure_template(&tpl, |url| async move {
                assert!(url.expose_secret().ends_with("?sslmode=require"));
                fake_migrate(url).await
            })
            .await
            .unwrap();
        let db = EnvDatabase::for_environment(
            Uuid::new_v4(),
            SecretString::from("passwordT1".to_owned()),
        );
        admin.ensure_database(&db, &tpl).await.unwrap();
        let sqlalchemy = db.sqlalchemy_url("127.0.0.1", pg.port(), admin.tls());
        assert!(sqlalchemy.expose_secret().ends_with("?sslmode=require"));
        let mut conn =
            PgConnection::connect(db.url("127.0.0.1", pg.port(), admin.tls()).expose_secret())
                .await
                .unwrap();
        let (dag,): (String,) = sqlx::query_as("SELECT dag_id FROM dag")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(dag, "from-template");
        pg.stop().await.unwrap();
    }

    #[tokio::test]
    async fn agents_sharing_a_postgres_make_its_template_once_and_clone_it_at_once() {
        let (_tmp, pg) = private_postgres().await;
        let tpl = template_name("3.3.2");
        // As several agents (cells) on one platform Postgres, each with its own pool, get their
        // first environment at once: one migrates the template, the others wait, then all clone.
        let url = pg.url("postgres");
        let admins: Vec<MetadataDbAdmin> =
            futures::future::join_all((0..5).map(|_| MetadataDbAdmin::connect(&url)))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        let made = futures::future::join_all(admins.iter().enumerate().map(|(i, a)| {
            let tpl = tpl.clone();
            async move {
                a.ensure_template(&tpl, |url| async move {
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    fake_migrate(url).await
                })
                .await?;
                let db = EnvDatabase::for_environment(
                    Uuid::new_v4(),
                    SecretString::from(format!("password{i}")),
                );
                a.ensure_database(&db, &tpl).await
            }
        }))
        .await;
        for m in made {
            m.unwrap();
        }
        pg.stop().await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_callers_make_the_template_once() {
        let (_tmp, pg) = private_postgres().await;
        let admin = MetadataDbAdmin::connect(&pg.url("postgres")).await.unwrap();
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let slow = |runs: std::sync::Arc<std::sync::atomic::AtomicUsize>| {
            move |url| async move {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                fake_migrate(url).await
            }
        };
        let (a, b, c) = tokio::join!(
            admin.ensure_template("tpl", slow(runs.clone())),
            admin.ensure_template("tpl", slow(runs.clone())),
            admin.ensure_template("tpl", slow(runs.clone())),
        );
        a.unwrap();
        b.unwrap();
        c.unwrap();
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(admin.template_ready("tpl").await.unwrap());
        pg.stop().await.unwrap();
    }

    /// The platform admin of `pg`: its superuser, or a role with `CREATEDB` and `CREATEROLE`
    /// only, as managed Postgres services give.
    async fn platform_admin(pg: &PrivatePostgres, superuser: bool) -> MetadataDbAdmin {
        if superuser {
            return MetadataDbAdmin::connect(&pg.url("postgres")).await.unwrap();
        }
        let mut conn = PgConnection::connect(pg.url("postgres").expose_secret())
            .await
            .unwrap();
        sqlx::query("CREATE ROLE platform_admin LOGIN CREATEDB CREATEROLE PASSWORD 'adminPw1'")
            .execute(&mut conn)
            .await
            .unwrap();
        let url = format!(
            "postgres://platform_admin:adminPw1@127.0.0.1:{}/postgres",
            pg.port()
        );
        let admin = MetadataDbAdmin::connect(&SecretString::from(url))
            .await
            .unwrap();
        let superuser: bool =
            sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                .fetch_one(&admin.pool)
                .await
                .unwrap();
        assert!(!superuser);
        admin
    }

    #[rstest::rstest]
    #[case::as_a_superuser(true)]
    #[case::as_an_admin_with_createdb_and_createrole_only(false)]
    #[tokio::test]
    async fn clones_are_owned_by_their_role_and_closed_to_every_other(#[case] superuser: bool) {
        let (_tmp, pg) = private_postgres().await;
        let admin = platform_admin(&pg, superuser).await;
        let tpl = template_name("3.3.2");
        // A migration that fails leaves no usable template, and a retry makes it.
        let failed = admin
            .ensure_template(&tpl, |_| async { Err("boom".to_owned()) })
            .await;
        assert!(matches!(failed, Err(MetadataDbError::Migrate { .. })));
        assert!(!admin.template_ready(&tpl).await.unwrap());
        admin.ensure_template(&tpl, fake_migrate).await.unwrap();
        assert!(admin.template_ready(&tpl).await.unwrap());
        admin
            .ensure_template(&tpl, |_| async { Err("must not run again".to_owned()) })
            .await
            .unwrap();

        let a = EnvDatabase::for_environment(
            Uuid::new_v4(),
            SecretString::from("passwordA1".to_owned()),
        );
        let b = EnvDatabase::for_environment(
            Uuid::new_v4(),
            SecretString::from("passwordB2".to_owned()),
        );
        admin.ensure_database(&a, &tpl).await.unwrap();
        admin.ensure_database(&a, &tpl).await.unwrap(); // idempotent
        admin.ensure_database(&b, &tpl).await.unwrap();

        // A's role owns A's copy of the template's tables: it reads and writes them.
        let mut ca = connect_as(&a, &a, pg.port()).await.unwrap();
        let seeded: String = sqlx::query_scalar("SELECT dag_id FROM dag")
            .fetch_one(&mut ca)
            .await
            .unwrap();
        assert_eq!(seeded, "from-template");
        sqlx::query("INSERT INTO dag VALUES ('a-only')")
            .execute(&mut ca)
            .await
            .unwrap();
        sqlx::query("ALTER TABLE dag ADD COLUMN note text")
            .execute(&mut ca)
            .await
            .unwrap();

        // A's role cannot connect to B's database, nor to the template.
        let err = connect_as(&b, &a, pg.port()).await.unwrap_err();
        assert!(err.to_string().contains("permission denied"), "{err}");
        let tpl_db = EnvDatabase {
            name: tpl.clone(),
            role: a.role.clone(),
            password: a.password.clone(),
        };
        assert!(connect_as(&tpl_db, &a, pg.port()).await.is_err());
        // B's data is B's alone.
        let mut cb = connect_as(&b, &b, pg.port()).await.unwrap();
        let b_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM dag")
            .fetch_one(&mut cb)
            .await
            .unwrap();
        assert_eq!(b_rows, 1);
        cb.close().await.unwrap();

        // Dropping A (with A still connected) removes its database and role, and nothing of B.
        admin.drop_database(&a).await.unwrap();
        admin.drop_database(&a).await.unwrap(); // idempotent
        drop(ca);
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&a.name)
            .fetch_one(&admin.pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
        assert!(!admin.role_exists(&a.role).await.unwrap());
        assert!(connect_as(&b, &b, pg.port()).await.is_ok());
        pg.stop().await.unwrap();
    }
}
