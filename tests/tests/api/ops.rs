use hangar_tests::spawn_app;

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
