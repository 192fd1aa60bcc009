//! Hangar on a Postgres and a Redis set up as managed services may be: TLS connections only
//! (RDS with `rds.force_ssl`, ElastiCache with transit encryption, Azure's defaults) and a
//! Postgres admin that is not a superuser (`CREATEDB`, `CREATEROLE`, as RDS's `rds_superuser`).
//! The control plane, the agent, the environments' Airflow (psycopg2) and their Celery broker
//! (kombu) all connect over TLS, the template is migrated and cloned by that admin, and a DAG
//! runs on a Celery worker.

use std::time::Duration;

use hangar_tenants::api::{CreateEnvironment, Role};
use hangar_tenants::Phase;
use hangar_tests::{spawn_stack_opts, wait_for_phase, StackOptions};
use reqwest::Method;
use secrecy::ExposeSecret;
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_runs_its_dags_on_a_tls_only_postgres_and_redis_with_no_superuser() {
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

    let editor = stack
        .app
        .tenant_with_role("secure", Role::Editor)
        .await
        .unwrap();
    let env = CreateEnvironment {
        name: "etl".into(),
        ..Default::default()
    };
    editor
        .create_environment("secure", &env, None)
        .await
        .unwrap();
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
}
