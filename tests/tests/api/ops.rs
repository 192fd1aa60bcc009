use hangar_tenants::api::{CreateEnvironment, Role};
use hangar_tenants::WorkerStatus;
use hangar_tests::{healthy, spawn_app};

#[tokio::test]
async fn healthz_reports_the_database_ok() {
    let app = spawn_app().await;
    let h = app.anonymous().healthz().await.unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["database"], "ok");
}

#[tokio::test]
async fn metrics_expose_request_counts_and_environments_by_phase() {
    let app = spawn_app().await;
    app.anonymous().healthz().await.unwrap();
    let text = reqwest::get(format!("{}/metrics", app.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "hangar_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(text.contains("# TYPE hangar_environments gauge"), "{text}");
}

#[tokio::test]
async fn metrics_show_reported_workers_and_the_cells_pool_utilization() {
    let app = spawn_app().await;
    let c = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let mut agent = app.registered_agent("local", 10).await.unwrap();
    let created = c
        .create_environment(
            "data",
            &CreateEnvironment {
                name: "etl".into(),
                worker_weight: Some(3),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .environment;
    assert_eq!(created.spec.worker_weight, 3);
    agent.poll(std::time::Duration::from_secs(5)).await.unwrap();
    let mut observed = healthy(1);
    observed.workers = Some(WorkerStatus {
        queued: 7,
        running: 5,
        desired: 3,
        actual: 2,
        draining: 2,
        scale_ups: 4,
        scale_downs: 1,
    });
    let e = agent.report(created.id, &observed).await.unwrap();
    assert_eq!(e.observed.and_then(|o| o.workers), observed.workers);

    let text = reqwest::get(format!("{}/metrics", app.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"hangar_environment_tasks{tenant="data",environment="etl",cell="local",state="queued"} 7"#,
        r#"hangar_environment_workers{tenant="data",environment="etl",cell="local",state="actual"} 2"#,
        r#"hangar_environment_scaling_total{tenant="data",environment="etl",cell="local",direction="up"} 4"#,
        r#"hangar_cell_worker_slots{cell="local"} 8"#,
        r#"hangar_cell_workers{cell="local"} 4"#,
        r#"hangar_cell_pool_utilization{cell="local"} 0.5"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    let cells = app.admin.list_cells().await.unwrap().cells;
    let local = cells.iter().find(|c| c.name == "local").unwrap();
    assert_eq!(
        (
            local.pool.worker_slots,
            local.pool.workers,
            local.pool.utilization
        ),
        (8, 4, 0.5)
    );
}

#[tokio::test]
async fn served_openapi_document_matches_the_checked_in_copy() {
    let app = spawn_app().await;
    let served = reqwest::get(format!("{}/v1/openapi.json", app.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let checked_in = include_str!("../../../docs/openapi.json");
    assert!(
        served == checked_in,
        "docs/openapi.json is stale: regenerate it with `cargo run -q -p hangar-control-plane --bin hangar -- openapi > docs/openapi.json`"
    );
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    for path in [
        "/v1/tenants",
        "/v1/tenants/{tenant}/environments",
        "/v1/tenants/{tenant}/environments/{env}",
        "/v1/tenants/{tenant}/audit",
        "/v1/cells/{cell}/assignments",
    ] {
        assert!(doc["paths"].get(path).is_some(), "missing {path}");
    }
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = spawn_app().await;
    let r = reqwest::get(format!("{}/healthz", app.address))
        .await
        .unwrap();
    assert!(r.headers().get("x-request-id").is_some());
}
