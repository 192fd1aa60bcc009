//! The template's migration Job against the scripted API server: a leftover Job removed, the
//! Job and its Secret created with the rendered bodies (the URL as pods reach it, in the Secret
//! only, the Secret owned by the Job), the Job read until it completes or fails, a failure
//! named with the template and its pod's log, and what is left cleaned up.

use std::sync::Arc;

use hangar_tenants::blueprint::kubernetes::{migrate_job, KubeCell, MigrateInput};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::mock::{self, not_found, scenario, status, ApiServer};
use super::*;
use crate::kubernetes::migrate::{for_pods, MigrateJobError, MigratePoll, TemplateMigrator};
use crate::kubernetes::{Address, BlueprintRenderer};

const TEMPLATE: &str = "hangar_tpl_3_1_0";
const JOB: &str = "hangar-migrate-hangar-tpl-3-1-0";
const SYSTEM: &str = "hangar-system";
const UID: &str = "7d2c4a1e-0000-4000-8000-00000000cafe";
/// The URL `ensure_template` hands over: the platform Postgres as the agent reaches it.
const AGENT_URL: &str =
    "postgresql+psycopg2://hangar_template_owner:0a1b2c3d4e5f@127.0.0.1:15432/hangar_tpl_3_1_0";
/// The same database as pods reach it.
const POD_URL: &str = "postgresql+psycopg2://hangar_template_owner:0a1b2c3d4e5f@postgres.hangar-system.svc:5432/hangar_tpl_3_1_0";

fn migrator(client: kube::Client, polls: u32) -> TemplateMigrator {
    TemplateMigrator::new(
        client,
        Arc::new(BlueprintRenderer::new(
            KubeCell::default(),
            crate::bucket_gateway::GatewayKey::derive(b"test"),
        )),
        Address {
            host: "postgres.hangar-system.svc".into(),
            port: 5432,
        },
        MigratePoll {
            every: Duration::from_millis(1),
            polls,
        },
    )
}

async fn run(m: &TemplateMigrator) -> Result<(), MigrateJobError> {
    m.migrate(TEMPLATE, "3.1.0", SecretString::from(AGENT_URL))
        .await
}

fn job_uri() -> String {
    format!("/apis/batch/v1/namespaces/{SYSTEM}/jobs/{JOB}")
}

fn secret_uri() -> String {
    format!("/api/v1/namespaces/{SYSTEM}/secrets/{JOB}")
}

/// The rendered Job and Secret, with the pod-facing URL.
fn rendered() -> (Value, Value) {
    let m = migrate_job(&MigrateInput {
        template: TEMPLATE.into(),
        airflow_version: "3.1.0".into(),
        sql_alchemy_conn: Some(POD_URL.into()),
        cell: KubeCell::default(),
    })
    .unwrap();
    (m.job, m.secret)
}

/// The Job as the API server has it, with `conditions`.
fn job(conditions: Value) -> Value {
    let (mut job, _) = rendered();
    job["metadata"]["uid"] = json!(UID);
    job["status"] = json!({"conditions": conditions});
    job
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    json!([{"type": kind, "status": "True", "reason": reason, "message": message}])
}

fn deleted() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

/// No Job or Secret is left from before.
async fn serve_nothing_left(server: &mut ApiServer) {
    let got = server
        .expect("DELETE", &job_uri(), 404, not_found("jobs", JOB))
        .await;
    assert_eq!(got.body["propagationPolicy"], "Background");
    server
        .expect("DELETE", &secret_uri(), 404, not_found("secrets", JOB))
        .await;
}

/// The Job and its Secret created, asserting their bodies.
async fn serve_creates(server: &mut ApiServer) {
    let (rendered_job, rendered_secret) = rendered();
    let got = server
        .expect(
            "POST",
            &format!("/apis/batch/v1/namespaces/{SYSTEM}/jobs?"),
            201,
            job(json!([])),
        )
        .await;
    assert_eq!(got.body, rendered_job);
    assert!(
        !got.body.to_string().contains("0a1b2c3d4e5f"),
        "the password is in the Secret only"
    );
    let got = server
        .expect(
            "POST",
            &format!("/api/v1/namespaces/{SYSTEM}/secrets?"),
            201,
            rendered_secret.clone(),
        )
        .await;
    assert_eq!(got.body["stringData"]["sql_alchemy_conn"], POD_URL);
    assert_eq!(
        got.body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "batch/v1", "kind": "Job", "name": JOB, "uid": UID}])
    );
    let mut without_owner = got.body.clone();
    without_owner["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    assert_eq!(without_owner, rendered_secret);
}

async fn serve_clean_up(server: &mut ApiServer) {
    let got = server.expect("DELETE", &job_uri(), 200, deleted()).await;
    assert_eq!(got.body["propagationPolicy"], "Background");
    // The garbage collector may have been first.
    server
        .expect("DELETE", &secret_uri(), 404, not_found("secrets", JOB))
        .await;
}

#[test]
fn the_job_gets_the_address_pods_reach_postgres_at() {
    let pod = |host: &str, port| Address {
        host: host.into(),
        port,
    };
    let url = SecretString::from(AGENT_URL);
    let out = for_pods(&url, &pod("postgres.hangar-system.svc", 5432)).unwrap();
    assert_eq!(out.expose_secret(), POD_URL);
    let out = for_pods(&url, &pod("fd00::5", 5433)).unwrap();
    assert!(
        out.expose_secret()
            .contains("@[fd00::5]:5433/hangar_tpl_3_1_0"),
        "{}",
        out.expose_secret()
    );
    assert!(for_pods(&SecretString::from("not a url"), &pod("pg", 5432)).is_none());
}

#[tokio::test]
async fn the_job_is_created_polled_until_complete_and_cleaned_up() {
    let (client, mut server) = mock::pair();
    let m = migrator(client, 10);
    scenario(run(&m), async {
        serve_nothing_left(&mut server).await;
        serve_creates(&mut server).await;
        server.expect("GET", &job_uri(), 200, job(json!([]))).await;
        // A failed read is read again.
        server
            .expect(
                "GET",
                &job_uri(),
                503,
                status(503, "ServiceUnavailable", "etcd"),
            )
            .await;
        server
            .expect("GET", &job_uri(), 200, job(condition("Complete", "", "")))
            .await;
        serve_clean_up(&mut server).await;
    })
    .await
    .unwrap();
    server.assert_idle();
}

#[tokio::test]
async fn a_failed_job_is_an_error_naming_the_template_with_its_pods_log() {
    let (client, mut server) = mock::pair();
    let m = migrator(client, 10);
    let err = scenario(run(&m), async {
        serve_nothing_left(&mut server).await;
        serve_creates(&mut server).await;
        server
            .expect(
                "GET",
                &job_uri(),
                200,
                job(condition(
                    "Failed",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )),
            )
            .await;
        let pod = |name: &str, created: &str| {
            json!({"metadata": {"name": name, "namespace": SYSTEM, "creationTimestamp": created}})
        };
        server
            .expect(
                "GET",
                &format!("/api/v1/namespaces/{SYSTEM}/pods?labelSelector=batch.kubernetes.io%2Fjob-name%3D{JOB}"),
                200,
                json!({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                       "items": [pod(&format!("{JOB}-abcde"), "2026-12-01T10:00:00Z"),
                                 pod(&format!("{JOB}-fghij"), "2026-12-01T10:01:00Z")]}),
            )
            .await;
        server
            .expect_text(
                "GET",
                &format!("/api/v1/namespaces/{SYSTEM}/pods/{JOB}-fghij/log?container=migrate&tailLines=20"),
                "Running migrations\nsqlalchemy.exc.OperationalError: password authentication failed\n",
            )
            .await;
        // The failed Job stays for its TTL: nothing is deleted.
    })
    .await
    .unwrap_err();
    server.assert_idle();
    let message = err.to_string();
    assert!(matches!(err, MigrateJobError::Failed { .. }), "{message}");
    assert!(message.contains(TEMPLATE), "{message}");
    assert!(message.contains(JOB), "{message}");
    assert!(message.contains("BackoffLimitExceeded"), "{message}");
    assert!(
        message.ends_with("sqlalchemy.exc.OperationalError: password authentication failed"),
        "{message}"
    );
}

#[tokio::test]
async fn a_failed_job_whose_log_cannot_be_read_reports_its_condition() {
    let (client, mut server) = mock::pair();
    let m = migrator(client, 10);
    let err = scenario(run(&m), async {
        serve_nothing_left(&mut server).await;
        serve_creates(&mut server).await;
        server
            .expect(
                "GET",
                &job_uri(),
                200,
                job(condition(
                    "Failed",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )),
            )
            .await;
        server
            .expect(
                "GET",
                &format!("/api/v1/namespaces/{SYSTEM}/pods?labelSelector=batch.kubernetes.io%2Fjob-name%3D{JOB}"),
                403,
                status(403, "Forbidden", "pods is forbidden"),
            )
            .await;
    })
    .await
    .unwrap_err();
    server.assert_idle();
    let message = err.to_string();
    assert!(message.contains(TEMPLATE), "{message}");
    assert!(
        message.ends_with("DeadlineExceeded: Job was active longer than specified deadline"),
        "{message}"
    );
}

#[tokio::test]
async fn a_job_left_by_an_earlier_attempt_is_deleted_before_a_new_one_starts() {
    let (client, mut server) = mock::pair();
    let m = migrator(client, 10);
    scenario(run(&m), async {
        let got = server
            .expect("DELETE", &job_uri(), 200, job(json!([])))
            .await;
        assert_eq!(got.body["propagationPolicy"], "Background");
        server.expect("DELETE", &secret_uri(), 200, deleted()).await;
        // Still there once, then gone.
        server.expect("GET", &job_uri(), 200, job(json!([]))).await;
        server
            .expect("GET", &job_uri(), 404, not_found("jobs", JOB))
            .await;
        serve_creates(&mut server).await;
        server
            .expect("GET", &job_uri(), 200, job(condition("Complete", "", "")))
            .await;
        serve_clean_up(&mut server).await;
    })
    .await
    .unwrap();
    server.assert_idle();
}

#[tokio::test]
async fn a_job_that_never_finishes_is_deleted_and_reported() {
    let (client, mut server) = mock::pair();
    let m = migrator(client, 2);
    let err = scenario(run(&m), async {
        serve_nothing_left(&mut server).await;
        serve_creates(&mut server).await;
        for _ in 0..2 {
            server.expect("GET", &job_uri(), 200, job(json!([]))).await;
        }
        serve_clean_up(&mut server).await;
    })
    .await
    .unwrap_err();
    server.assert_idle();
    assert!(matches!(err, MigrateJobError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains(TEMPLATE));
}

#[tokio::test]
async fn a_job_that_cannot_be_created_is_an_error_and_leaves_nothing() {
    let (client, mut server) = mock::pair();
    let m = migrator(client, 2);
    let err = scenario(run(&m), async {
        serve_nothing_left(&mut server).await;
        server
            .expect(
                "POST",
                &format!("/apis/batch/v1/namespaces/{SYSTEM}/jobs?"),
                403,
                status(403, "Forbidden", "jobs.batch is forbidden"),
            )
            .await;
    })
    .await
    .unwrap_err();
    server.assert_idle();
    assert_eq!(
        err.to_string(),
        format!("failed to create Job {SYSTEM}/{JOB}")
    );
}

/// With a real Postgres behind `ensure_template`: two environments of one version ask at once,
/// one Job is made (the other waits on the template's lock and finds it ready); the Job's
/// Secret holds the template owner's working password at the pods' address, and the template is
/// sealed as ready once the Job completes. A failed Job leaves it not ready, the error naming
/// the template.
#[tokio::test]
async fn one_job_makes_the_template_for_environments_asking_at_once() {
    use crate::embedded::PrivatePostgres;
    use crate::metadata_db::MetadataDbAdmin;
    use sqlx::Connection;

    let (_tmp, pg) = PrivatePostgres::in_temp_dir("hangar-kube-tpl-").await;
    let admin = MetadataDbAdmin::connect(&pg.url("postgres")).await.unwrap();
    let (client, mut server) = mock::pair();
    // Pods reach the same server by another name than the agent's 127.0.0.1.
    let m = TemplateMigrator::new(
        client,
        Arc::new(BlueprintRenderer::new(
            KubeCell::default(),
            crate::bucket_gateway::GatewayKey::derive(b"test"),
        )),
        Address {
            host: "localhost".into(),
            port: pg.port(),
        },
        MigratePoll {
            every: Duration::from_millis(1),
            polls: 10,
        },
    );
    let jobs = format!("/apis/batch/v1/namespaces/{SYSTEM}/jobs?");
    let secrets = format!("/api/v1/namespaces/{SYSTEM}/secrets?");

    // The Job fails: nothing is sealed, and the error names the template.
    let err = scenario(m.ensure_template(&admin, "3.1.0"), async {
        serve_nothing_left(&mut server).await;
        server.expect("POST", &jobs, 201, job(json!([]))).await;
        server.expect("POST", &secrets, 201, json!({})).await;
        let failed = condition("Failed", "BackoffLimitExceeded", "backoff limit");
        server.expect("GET", &job_uri(), 200, job(failed)).await;
        server
            .expect(
                "GET",
                &format!("/api/v1/namespaces/{SYSTEM}/pods?labelSelector=batch.kubernetes.io%2Fjob-name%3D{JOB}"),
                200,
                json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}),
            )
            .await;
    })
    .await
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "failed to migrate template {TEMPLATE}: Job {SYSTEM}/{JOB}"
        )),
        "{message}"
    );
    assert!(!admin.template_ready(TEMPLATE).await.unwrap());

    // The next attempt: the failed Job is removed, a new one runs "airflow db migrate" (here:
    // the script, with the Secret's URL) and completes.
    let (a, b) = scenario(
        async {
            tokio::join!(
                m.ensure_template(&admin, "3.1.0"),
                m.ensure_template(&admin, "3.1.0")
            )
        },
        async {
            server.expect("DELETE", &job_uri(), 200, deleted()).await;
            server.expect("DELETE", &secret_uri(), 200, deleted()).await;
            server
                .expect("GET", &job_uri(), 404, not_found("jobs", JOB))
                .await;
            server.expect("POST", &jobs, 201, job(json!([]))).await;
            let secret = server.expect("POST", &secrets, 201, json!({})).await;
            let url = secret.body["stringData"]["sql_alchemy_conn"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(
                url.starts_with("postgresql+psycopg2://hangar_template_owner:")
                    && url.ends_with(&format!("@localhost:{}/{TEMPLATE}", pg.port())),
                "{url}"
            );
            let mut conn =
                sqlx::PgConnection::connect(&url.replace("postgresql+psycopg2://", "postgres://"))
                    .await
                    .unwrap();
            sqlx::query("CREATE TABLE alembic_version (version_num text)")
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
            server
                .expect("GET", &job_uri(), 200, job(condition("Complete", "", "")))
                .await;
            serve_clean_up(&mut server).await;
        },
    )
    .await;
    assert_eq!(a.unwrap(), TEMPLATE);
    assert_eq!(b.unwrap(), TEMPLATE);
    server.assert_idle();
    assert!(admin.template_ready(TEMPLATE).await.unwrap());
}
