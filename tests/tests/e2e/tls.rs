//! Hangar on a Postgres and a Redis set up as managed services may be: TLS connections only
//! (RDS with `rds.force_ssl`, ElastiCache with transit encryption, Azure's defaults), a
//! Postgres admin that is not a superuser (`CREATEDB`, `CREATEROLE`, as RDS's `rds_superuser`),
//! and a Redis that refuses ACL commands (ElastiCache, Memorystore, Azure Cache for Redis).
//! The control plane, the agent and the environments' Airflow (psycopg2) connect over TLS, the
//! template is migrated and cloned by that admin, the environments' Celery brokers (kombu) go
//! through the agent's broker gateway (which reaches Redis over TLS), and a DAG runs on a
//! Celery worker.

use std::time::Duration;

use hangar_tenants::api::{CreateEnvironment, Role};
use hangar_tenants::Phase;
use hangar_tests::{spawn_stack_opts, wait_for_phase, StackOptions};
use reqwest::Method;
use secrecy::ExposeSecret;
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_runs_its_dags_on_managed_like_postgres_and_redis() {
    let stack = spawn_stack_opts(StackOptions {
        managed_like: true,
        ..StackOptions::default()
    })
    .await
    .unwrap();

    // The agent's admin is no superuser.
    let mut admin_conn = sqlx::PgConnection::connect(&stack.postgres_admin)
        .await
        .unwrap();
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut admin_conn)
            .await
            .unwrap();
    assert!(!superuser);
    admin_conn.close().await.unwrap();

    // Neither server takes a connection without TLS.
    let plain_pg = stack
        .postgres_admin
        .replace("sslmode=require", "sslmode=disable");
    let err = sqlx::PgConnection::connect(&plain_pg).await.unwrap_err();
    assert!(err.to_string().contains("no pg_hba.conf entry"), "{err}");
    let admin = stack.redis_admin.expose_secret();
    assert!(admin.starts_with("rediss://"), "{admin}");
    let plain_redis = admin
        .replace("rediss://", "redis://")
        .replace("#insecure", "");
    let refused = async {
        let mut c = redis::Client::open(plain_redis)?
            .get_multiplexed_async_connection()
            .await?;
        redis::cmd("PING").query_async::<String>(&mut c).await
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), refused)
            .await
            .map_or(true, |r| r.is_err()),
        "the Redis answered without TLS"
    );

    // The Redis has no ACL commands, for anyone.
    let mut admin_redis = redis::Client::open(admin)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let acl = redis::cmd("ACL")
        .arg("WHOAMI")
        .query_async::<String>(&mut admin_redis)
        .await;
    assert!(acl.is_err(), "{acl:?}");

    let editor = stack
        .app
        .tenant_with_role("secure", Role::Editor)
        .await
        .unwrap();
    let env = CreateEnvironment {
        name: "etl".into(),
        ..Default::default()
    };
    let id = editor
        .create_environment("secure", &env, None)
        .await
        .unwrap()
        .environment
        .id
        .simple()
        .to_string();
    wait_for_phase(
        &editor,
        "secure",
        "etl",
        Phase::Available,
        Duration::from_secs(300),
    )
    .await;
    let r = editor
        .request(
            Method::PUT,
            "v1/tenants/secure/environments/etl/dags/where_am_i.py",
        )
        .body(super::DAG)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // The task ran on a Celery worker, queued through the TLS broker, its state in the TLS
    // database.
    let home = super::run_dag(&editor, "secure").await;
    assert!(home.starts_with(&stack.dir.display().to_string()), "{home}");
    // Its broker user is the gateway's (a digest in the platform Redis), its queues are under
    // its own prefix there, and nothing of the environment's holds the Redis's admin login.
    let exists: bool = redis::cmd("HEXISTS")
        .arg(hangar_data_plane::broker_gateway::USERS_KEY)
        .arg(format!("env-{id}"))
        .query_async(&mut admin_redis)
        .await
        .unwrap();
    assert!(exists);
    let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("hangar:{id}:*"))
        .arg("COUNT")
        .arg(10_000)
        .query_async(&mut admin_redis)
        .await
        .unwrap();
    assert!(
        !keys.is_empty(),
        "no queue of the environment's on the platform Redis"
    );
    let admin_password = url::Url::parse(admin)
        .unwrap()
        .password()
        .unwrap()
        .to_owned();
    let found = std::process::Command::new("grep")
        .args(["-rlF", &admin_password])
        .arg(stack.dir.join("envs"))
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "the Redis admin's password is in {}",
        String::from_utf8_lossy(&found.stdout)
    );
}
