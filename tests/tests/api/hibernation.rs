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

/// A fake Airflow of `data/etl` that answers its version.
async fn version_airflow() -> FakeAirflow {
    FakeAirflow::start(
        "data",
        "etl",
        Router::new().route(
            "/api/v2/version",
            get(|| async { "{\"version\": \"3.3.2\"}" }),
        ),
    )
    .await
    .unwrap()
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
    let fake = version_airflow().await;
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

/// Reported running (its api-server at `api`) with nothing to run since `idle_for` ago.
fn idle(revision: i64, idle_for: chrono::TimeDelta, api: &str) -> ObservedState {
    let mut o = ObservedState {
        idle_since: Some(chrono::Utc::now() - idle_for),
        ..healthy(revision)
    };
    o.endpoints.insert("api".into(), api.into());
    o
}

#[tokio::test]
async fn an_environment_idle_for_its_window_is_asked_to_hibernate_unless_used() {
    // One minute of `hibernate_after_idle_minutes` lasts a second here: the default 60 is 60 s.
    let (app, editor, mut agent, id) = hangar_tests::running_etl_with(|s| s.idle_minute_secs = 1)
        .await
        .unwrap();
    agent.poll(Duration::from_secs(1)).await.unwrap();
    let fake = version_airflow().await;
    agent.serve_airflow(id, &fake.url).await.unwrap();
    let secs = chrono::TimeDelta::seconds;

    // Idle for less than its window: it stays up.
    let e = agent
        .report(id, &idle(1, secs(30), &fake.url))
        .await
        .unwrap();
    assert_eq!(e.phase, Phase::Available);
    assert!(e.last_used_at.is_none());

    // Used just now: its window starts again, however long nothing has run.
    let r = editor
        .request(
            Method::GET,
            "v1/tenants/data/environments/etl/airflow/api/v2/version",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let used = editor
        .get_environment("data", "etl")
        .await
        .unwrap()
        .last_used_at
        .expect("the use is recorded");
    assert!(
        (chrono::Utc::now() - used).num_seconds().abs() < 5,
        "{used}"
    );
    let e = agent
        .report(id, &idle(1, secs(600), &fake.url))
        .await
        .unwrap();
    assert_eq!(e.phase, Phase::Available);

    // 0: never by itself.
    let never = hangar_tenants::api::UpdateEnvironment {
        hibernate_after_idle_minutes: Some(0),
        ..Default::default()
    };
    let e = editor
        .update_environment("data", "etl", &never, None)
        .await
        .unwrap();
    assert_eq!(e.spec.hibernate_after_idle_minutes, 0);
    agent.poll(Duration::from_secs(5)).await.unwrap();
    let e = agent
        .report(id, &idle(2, secs(86_400), &fake.url))
        .await
        .unwrap();
    assert_eq!(e.phase, Phase::Available);

    // A window of 2 s, past since its last use and its last task: asked to hibernate, as the
    // audit log says, and its cell is told.
    let short = hangar_tenants::api::UpdateEnvironment {
        hibernate_after_idle_minutes: Some(2),
        ..Default::default()
    };
    editor
        .update_environment("data", "etl", &short, None)
        .await
        .unwrap();
    agent.poll(Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A scheduled run due within the window keeps it up.
    let soon = ObservedState {
        next_run: Some(chrono::Utc::now() + secs(1)),
        ..idle(3, secs(600), &fake.url)
    };
    assert_eq!(
        agent.report(id, &soon).await.unwrap().phase,
        Phase::Available
    );
    let e = agent
        .report(id, &idle(3, secs(600), &fake.url))
        .await
        .unwrap();
    assert_eq!(e.phase, Phase::Hibernating, "{:?}", e.status_message);
    let a = agent.poll(Duration::from_secs(5)).await.unwrap();
    assert!(a.environments[0].hibernate);
    let audit = app.admin.audit("data").await.unwrap();
    let asked = audit
        .entries
        .iter()
        .find(|e| e.action == "environment.hibernate")
        .expect("audited");
    assert_eq!(asked.details["by"], "idle", "{asked:?}");
    assert!(asked.details["idle_since"].is_string(), "{asked:?}");
    assert_eq!(asked.actor, "cell:local");
    assert_eq!(
        agent.report(id, &hibernated()).await.unwrap().phase,
        Phase::Hibernated
    );
    drop(app);
}
