use hangar_tenants::api::Problem;
use hangar_tenants::api::{CellCapacity, CreateEnvironment, RegisterCell, Role};
use hangar_tenants::WorkerStatus;
use hangar_tests::{healthy, spawn_app, ADMIN_TOKEN, METRICS_TOKEN};

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
    let text = app.metrics().await;
    assert!(
        text.contains(
            "hangar_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(text.contains("# TYPE hangar_environments gauge"), "{text}");
}

/// `/metrics` names every tenant's environments: only the platform's monitoring reads it.
#[tokio::test]
async fn only_the_metrics_token_and_the_platform_admin_may_scrape_metrics() {
    let app = spawn_app().await;
    let tenant = app.tenant_with_role("data", Role::Admin).await.unwrap();
    let scrape = |token: Option<String>| {
        let mut rb = reqwest::Client::new().get(format!("{}/metrics", app.address));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        async move {
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            let problem = if status == 200 {
                None
            } else {
                Some(r.json::<Problem>().await.unwrap())
            };
            (status, problem)
        }
    };
    assert_eq!(scrape(Some(METRICS_TOKEN.into())).await.0, 200);
    assert_eq!(scrape(Some(ADMIN_TOKEN.into())).await.0, 200);
    let (status, p) = scrape(None).await;
    assert_eq!(status, 401, "{p:?}");
    assert_eq!(scrape(Some("not-a-token-at-all-0123".into())).await.0, 401);
    let tenant_token = tenant
        .create_token(
            "data",
            &hangar_tenants::api::CreateToken {
                name: "reader".into(),
                role: Role::Viewer,
            },
        )
        .await
        .unwrap()
        .token;
    let (status, p) = scrape(Some(tenant_token)).await;
    assert_eq!(status, 403);
    assert!(p.unwrap().detail.contains("HANGAR_METRICS_TOKEN"));

    // The metrics token is no admin token.
    let metrics_only = app.anonymous().with_token(METRICS_TOKEN);
    let e = metrics_only.get_tenant("data").await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
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

    let text = app.metrics().await;
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
    assert_eq!(local.agent_panics, 0);
    assert!(text
        .lines()
        .any(|l| l == r#"hangar_cell_agent_panics_total{cell="local"} 0"#));

    // An agent whose loops panicked registers again with the count: the cell and the metric
    // show it.
    let again = agent
        .client
        .register_cell(
            "local",
            &RegisterCell {
                capacity: CellCapacity {
                    max_environments: 10,
                    worker_slots: 8,
                },
                agent_version: "fake-agent/1".to_owned(),
                isolation: None,
                warm_pool: 0,
                agent_panics: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(again.agent_panics, 3);
    let text = app.metrics().await;
    let line = r#"hangar_cell_agent_panics_total{cell="local"} 3"#;
    assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
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
