use hangar_tenants::api::{Problem, Role};
use hangar_tests::{spawn_app, TestApp};
use reqwest::Method;
use rstest::rstest;
use serde_json::json;

async fn post_raw(
    token: &hangar_client::Client,
    body: Vec<u8>,
    content_type: &str,
) -> (u16, Problem) {
    let r = token
        .request(Method::POST, "v1/tenants/data/environments")
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    hangar_tests::problem_of(r).await
}

/// Nothing was written: no environment, and no environment entry in the audit log.
async fn assert_nothing_written(app: &TestApp) {
    assert!(app
        .admin
        .list_environments("data")
        .await
        .unwrap()
        .environments
        .is_empty());
    let audit = app.admin.audit("data").await.unwrap();
    assert!(audit
        .entries
        .iter()
        .all(|e| !e.action.starts_with("environment.")));
}

#[rstest]
#[case::upper_case_name(json!({"name": "Analytics"}), "name")]
#[case::name_of_64_chars(json!({"name": "a".repeat(64)}), "name")]
#[case::path_escape_name(json!({"name": "../x"}), "name")]
#[case::unknown_field(json!({"name": "etl", "worker_count": 3}), "worker_count")]
#[case::missing_name(json!({"min_workers": 1}), "name")]
#[case::min_above_max(json!({"name": "etl", "min_workers": 5, "max_workers": 2}), "min_workers")]
#[case::version_off_the_allow_list(json!({"name": "etl", "airflow_version": "2.7.2"}), "airflow_version")]
#[case::platform_owned_config(json!({"name": "etl", "airflow_config_overrides": {"core.executor": "LocalExecutor"}}), "airflow_config_overrides.core.executor")]
#[case::broker_url_cmd(json!({"name": "etl", "airflow_config_overrides": {"celery.broker_url_cmd": "cat /etc/x"}}), "airflow_config_overrides.celery.broker_url_cmd")]
#[case::wrong_type(json!({"name": "etl", "max_workers": "ten"}), "max_workers")]
#[case::weight_zero(json!({"name": "etl", "worker_weight": 0}), "worker_weight")]
#[case::weight_too_high(json!({"name": "etl", "worker_weight": 1000}), "worker_weight")]
#[case::negative_count(json!({"name": "etl", "min_workers": -1}), "min_workers")]
#[case::unknown_class(json!({"name": "etl", "environment_class": "huge"}), "environment_class")]
#[case::reserved_env_var(json!({"name": "etl", "env_vars": {"AIRFLOW__CORE__EXECUTOR": "x"}}), "env_vars.AIRFLOW__CORE__EXECUTOR")]
#[case::too_many_schedulers(json!({"name": "etl", "schedulers": 9}), "schedulers")]
#[tokio::test]
async fn bad_create_bodies_get_422_naming_the_field(
    #[case] body: serde_json::Value,
    #[case] field: &str,
) {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let (status, p) = post_raw(
        &editor,
        serde_json::to_vec(&body).unwrap(),
        "application/json",
    )
    .await;
    assert_eq!(status, 422, "{p:?}");
    assert_eq!(p.status, 422);
    assert!(
        p.errors.iter().any(|e| e.field == field),
        "{field} not in {p:?}"
    );
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn malformed_json_gets_400() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let (status, p) = post_raw(&editor, b"{\"name\": \"etl\",".to_vec(), "application/json").await;
    assert_eq!(status, 400);
    assert!(p.detail.contains("malformed JSON"), "{p:?}");
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let body = serde_json::to_vec(&json!({"name": "etl", "requirements": "x".repeat(300 * 1024)}))
        .unwrap();
    let (status, p) = post_raw(&editor, body, "application/json").await;
    assert_eq!(status, 413);
    assert_eq!(p.status, 413);
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_gets_415_naming_content_type() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let (status, p) = post_raw(
        &editor,
        b"name=etl".to_vec(),
        "application/x-www-form-urlencoded",
    )
    .await;
    assert_eq!(status, 415);
    assert_eq!(p.errors[0].field, "Content-Type");
}

#[tokio::test]
async fn create_env_returns_409_when_name_taken() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let body = serde_json::to_vec(&json!({"name": "etl"})).unwrap();
    let first = editor
        .request(Method::POST, "v1/tenants/data/environments")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let (status, p) = post_raw(&editor, body, "application/json").await;
    assert_eq!(status, 409);
    assert_eq!(p.errors[0].field, "name");
    assert_eq!(
        app.admin
            .list_environments("data")
            .await
            .unwrap()
            .environments
            .len(),
        1
    );
}

#[tokio::test]
async fn a_bad_update_names_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    editor
        .create_environment(
            "data",
            &hangar_tenants::api::CreateEnvironment {
                name: "etl".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    for (body, field) in [
        (json!({"min_workers": 50}), "min_workers"),
        (json!({"name": "renamed"}), "name"),
        (
            json!({"airflow_config_overrides": {"database.sql_alchemy_conn": "sqlite://"}}),
            "airflow_config_overrides.database.sql_alchemy_conn",
        ),
    ] {
        let r = editor
            .request(Method::PATCH, "v1/tenants/data/environments/etl")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let p: Problem = r.json().await.unwrap();
        assert!(
            p.errors.iter().any(|e| e.field == field),
            "{field} not in {p:?}"
        );
    }
    let env = editor.get_environment("data", "etl").await.unwrap();
    assert_eq!(env.revision, 1);
    assert_eq!(env.spec.min_workers, 0);
}

#[tokio::test]
async fn a_malformed_if_match_or_idempotency_key_is_refused_by_name() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let r = editor
        .request(Method::POST, "v1/tenants/data/environments")
        .header("idempotency-key", "")
        .json(&json!({"name": "etl"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let p: Problem = r.json().await.unwrap();
    assert_eq!(p.errors[0].field, "Idempotency-Key");
    editor
        .create_environment(
            "data",
            &hangar_tenants::api::CreateEnvironment {
                name: "etl".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let r = editor
        .request(Method::PATCH, "v1/tenants/data/environments/etl")
        .header("if-match", "yesterday")
        .json(&json!({"max_workers": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let p: Problem = r.json().await.unwrap();
    assert_eq!(p.errors[0].field, "If-Match");
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_problems() {
    let app = spawn_app().await;
    // Before any token is looked at.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/no-such-thing", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let (status, p) = hangar_tests::problem_of(r).await;
    assert_eq!(status, 404);
    assert!(p.detail.contains("/v1/no-such-thing"), "{}", p.detail);

    let r = app
        .admin
        .request(Method::DELETE, "v1/tenants")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let allow = r
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "Allow: {allow}"
    );
    let (status, p) = hangar_tests::problem_of(r).await;
    assert_eq!(status, 405);
    assert!(p.detail.contains("DELETE"), "{}", p.detail);
}
