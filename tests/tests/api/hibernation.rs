//! Hibernation through the API, with an agent that runs nothing (the real thing is in the
//! end-to-end tests): who may ask, what the cell is told, the phases its reports lead to, and a
//! use of a hibernated environment's Airflow waking it and waiting for it.

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use hangar_tenants::api::Role;
use hangar_tenants::{ObservedState, Phase};
use hangar_tests::fake_airflow::FakeAirflow;
use hangar_tests::{healthy, running_etl};
use reqwest::Method;

fn hibernated() -> ObservedState {
    ObservedState {
        revision: Some(1),
        hibernated: true,
        ..Default::default()
    }
}

fn status_of(e: &hangar_client::ClientError) -> Option<u16> {
    e.status()
}

#[tokio::test]
async fn hibernate_and_wake_reach_the_cell_and_drive_the_phase() {
    let (app, editor, mut agent, id) = running_etl().await.unwrap();
    agent.poll(Duration::from_secs(1)).await.unwrap();
    let viewer = app.tenant_with_role("data", Role::Viewer).await.unwrap();

    // Editors and admins only; another tenant's environment does not exist for them.
    let refused = viewer
        .hibernate_environment("data", "etl")
        .await
        .unwrap_err();
    assert_eq!(status_of(&refused), Some(403), "{refused}");
    let other = app.tenant_with_role("other", Role::Admin).await.unwrap();
    let hidden = other
        .hibernate_environment("data", "etl")
        .await
        .unwrap_err();
    assert!(matches!(status_of(&hidden), Some(403 | 404)), "{hidden}");
    let missing = editor
        .hibernate_environment("data", "nope")
        .await
        .unwrap_err();
    assert_eq!(status_of(&missing), Some(404), "{missing}");

    let e = editor.hibernate_environment("data", "etl").await.unwrap();
    assert_eq!(e.phase, Phase::Hibernating);
    let a = agent.poll(Duration::from_secs(5)).await.unwrap();
    assert!(a.environments[0].hibernate);
    // Still running (a DAG run not finished): hibernating; then nothing runs: hibernated.
    assert_eq!(
        agent.report(id, &healthy(1)).await.unwrap().phase,
        Phase::Hibernating
    );
    assert_eq!(
        agent.report(id, &hibernated()).await.unwrap().phase,
        Phase::Hibernated
    );
    // Asking again changes nothing.
    let again = editor.hibernate_environment("data", "etl").await.unwrap();
    assert_eq!(again.phase, Phase::Hibernated);
    assert!(agent
        .poll(Duration::ZERO)
        .await
        .unwrap()
        .environments
        .is_empty());

    let e = editor.wake_environment("data", "etl").await.unwrap();
    assert_eq!(e.phase, Phase::Hibernated, "until it is back");
    assert_eq!(e.status_message.as_deref(), Some("waking up"));
    let a = agent.poll(Duration::from_secs(5)).await.unwrap();
    assert!(!a.environments[0].hibernate);
    assert_eq!(
        agent.report(id, &hibernated()).await.unwrap().phase,
        Phase::Hibernated
    );
    assert_eq!(
        agent.report(id, &healthy(1)).await.unwrap().phase,
        Phase::Available
    );

    let actions: Vec<String> = app
        .admin
        .audit("data")
        .await
        .unwrap()
        .entries
        .into_iter()
        .rev()
        .map(|e| e.action)
        .filter(|a| a == "environment.hibernate" || a == "environment.wake")
        .collect();
    assert_eq!(actions, ["environment.hibernate", "environment.wake"]);
}

#[tokio::test]
async fn a_call_to_a_hibernated_environments_airflow_wakes_it_and_waits_for_it() {
    let (_app, editor, mut agent, id) = running_etl().await.unwrap();
    agent.poll(Duration::from_secs(1)).await.unwrap();
    let fake = FakeAirflow::start(
        "data",
        "etl",
        Router::new().route(
            "/api/v2/version",
            get(|| async { "{\"version\": \"3.3.2\"}" }),
        ),
    )
    .await
    .unwrap();
    agent.serve_airflow(id, &fake.url).await.unwrap();
    editor.hibernate_environment("data", "etl").await.unwrap();
    agent.poll(Duration::from_secs(5)).await.unwrap();
    agent.tunnel.remove(id);
    assert_eq!(
        agent.report(id, &hibernated()).await.unwrap().phase,
        Phase::Hibernated
    );

    // A viewer's read is a use: it wakes the environment, and waits for it.
    let viewer = _app.tenant_with_role("data", Role::Viewer).await.unwrap();
    let started = Instant::now();
    let call = tokio::spawn(async move {
        viewer
            .request(
                Method::GET,
                "v1/tenants/data/environments/etl/airflow/api/v2/version",
            )
            .send()
            .await
            .unwrap()
    });
    // The cell is told to wake it, starts it (3 s here) and reports it running.
    let a = agent.poll(Duration::from_secs(10)).await.unwrap();
    assert!(!a.environments[0].hibernate, "{a:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    agent.serve_airflow(id, &fake.url).await.unwrap();
    let answer = call.await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(answer.text().await.unwrap().contains("3.3.2"));
    assert_eq!(
        editor.get_environment("data", "etl").await.unwrap().phase,
        Phase::Available
    );
}

#[tokio::test]
async fn an_environment_not_running_is_a_503_to_retry_later() {
    let (_app, editor, _agent, _id) = running_etl().await.unwrap();
    // Reported healthy but with no api-server address: nothing to call yet.
    let r = editor
        .request(
            Method::GET,
            "v1/tenants/data/environments/etl/airflow/api/v2/dags",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("10")
    );
}
