//! Prepared environments: a cell keeps as many as its agent asks for, a create whose spec they
//! can run takes one over (same id, next revision, its Airflow under an id-named path), any
//! other create takes the normal path, and no tenant sees one before it is claimed.

use std::time::Duration;

use axum::Router;
use hangar_tenants::api::{Assignment, CreateEnvironment, Role};
use hangar_tenants::Phase;
use hangar_tests::fake_airflow::FakeAirflow;
use hangar_tests::{healthy, spawn_app, FakeAgent};

/// The prepared environments among the cell's assignments since its last poll.
async fn warm_ones(agent: &mut FakeAgent) -> Vec<Assignment> {
    let a = agent.poll(Duration::from_secs(1)).await.unwrap();
    a.environments.into_iter().filter(|e| e.warm).collect()
}

/// Reports `id` up at `revision`, its Airflow served by `fake` through the cell's tunnel.
async fn up(agent: &FakeAgent, id: uuid::Uuid, revision: i64, fake: &FakeAirflow) {
    agent.tunnel.set(id, &fake.url);
    let mut observed = healthy(revision);
    observed.endpoints.insert("api".into(), fake.url.clone());
    agent.report(id, &observed).await.unwrap();
}

#[tokio::test]
async fn a_default_create_takes_over_a_prepared_environment_and_the_cell_prepares_another() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let mut agent = app.registered_agent("local", 10).await.unwrap();
    agent.open_tunnel();
    let cell = agent.register_warm(10, None, 1).await.unwrap();
    assert_eq!(cell.warm_pool, 1);

    // One is prepared: the platform's defaults, no workers, never hibernating, fresh secrets,
    // and its Airflow under a path named by its id.
    let warm = warm_ones(&mut agent).await;
    assert_eq!(warm.len(), 1, "{warm:?}");
    let w = &warm[0];
    assert_eq!(w.tenant, hangar_tenants::warm::WARM_TENANT);
    assert!(w.name.starts_with("warm-"), "{}", w.name);
    assert_eq!(
        w.airflow_path,
        format!("/v1/environments/{}/airflow/", w.id.simple())
    );
    assert_eq!(
        (w.spec.min_workers, w.spec.hibernate_after_idle_minutes),
        (0, 0)
    );
    assert!(w.secrets.is_some());

    // Nobody sees it, nor its tenant.
    assert!(editor
        .list_environments("data")
        .await
        .unwrap()
        .environments
        .is_empty());
    let tenants = app.admin.list_tenants().await.unwrap().tenants;
    assert_eq!(
        tenants.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["data"]
    );
    assert!(app
        .admin
        .get_environment(".warm-pool", &w.name)
        .await
        .is_err());
    let r = reqwest::Client::new()
        .get(format!(
            "{}/v1/environments/{}/airflow/api/v2/dags",
            app.address, w.id
        ))
        .bearer_auth(app.token_with_role("data", Role::Admin).await.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "an unclaimed environment is nobody's");

    // Not up yet: a create takes the normal path.
    let early = editor
        .create_environment(
            "data",
            &CreateEnvironment {
                name: "early".to_owned(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .environment;
    assert_ne!(early.id, w.id);

    // Up: a default create takes it over.
    let fake = FakeAirflow::start_at(&w.airflow_path, Router::new())
        .await
        .unwrap();
    up(&agent, w.id, 1, &fake).await;
    let etl = editor
        .create_environment(
            "data",
            &CreateEnvironment {
                name: "etl".to_owned(),
                min_workers: Some(1),
                hibernate_after_idle_minutes: Some(15),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .environment;
    assert_eq!(
        (etl.id, etl.revision, etl.phase),
        (w.id, 2, Phase::Creating)
    );
    assert_eq!(etl.webserver_url.as_deref(), Some(w.airflow_path.as_str()));
    assert_eq!(
        (etl.spec.min_workers, etl.spec.hibernate_after_idle_minutes),
        (1, 15)
    );

    // Its agent gets it under its new owner and name, with the same secrets and path; and a
    // new prepared one takes its place.
    let a = agent
        .poll(Duration::from_secs(1))
        .await
        .unwrap()
        .environments;
    let claimed = a.iter().find(|e| e.id == w.id).expect("the claimed one");
    assert_eq!(
        (
            claimed.tenant.as_str(),
            claimed.name.as_str(),
            claimed.revision,
            claimed.warm
        ),
        ("data", "etl", 2, false)
    );
    assert_eq!(claimed.airflow_path, w.airflow_path);
    assert_eq!(claimed.secrets, w.secrets);
    let next: Vec<_> = a.iter().filter(|e| e.warm).collect();
    assert_eq!(next.len(), 1, "{a:?}");
    assert_ne!(next[0].id, w.id);

    up(&agent, w.id, 2, &fake).await;
    let e = editor.get_environment("data", "etl").await.unwrap();
    assert_eq!(e.phase, Phase::Available);

    // Its Airflow answers under its name and under its id-named path alike.
    let token = app.token_with_role("data", Role::Viewer).await.unwrap();
    for path in [
        "/v1/tenants/data/environments/etl/airflow/api/v2/dags".to_owned(),
        format!("{}api/v2/dags", w.airflow_path),
    ] {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", app.address))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let echoed: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            echoed["path"],
            format!("{}api/v2/dags", w.airflow_path),
            "{path}"
        );
    }
    // Another tenant does not reach it by its id.
    let other = app.token_with_role("ops", Role::Admin).await.unwrap();
    let r = reqwest::Client::new()
        .get(format!("{}{}api/v2/dags", app.address, w.airflow_path))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The audit log says it was prepared.
    let admin = app.tenant_with_role("data", Role::Admin).await.unwrap();
    let log = admin.audit("data").await.unwrap().entries;
    let created = log
        .iter()
        .find(|l| l.action == "environment.create" && l.target == "data/environments/etl")
        .unwrap();
    assert_eq!(created.details["prepared"], true);
    assert_eq!(created.details["revision"], 2);
}

#[tokio::test]
async fn a_create_the_prepared_environment_cannot_run_as_it_is_takes_the_normal_path() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let mut agent = app.registered_agent("local", 10).await.unwrap();
    agent.open_tunnel();
    agent.register_warm(10, None, 1).await.unwrap();
    let w = warm_ones(&mut agent).await.remove(0);
    let fake = FakeAirflow::start_at(&w.airflow_path, Router::new())
        .await
        .unwrap();
    up(&agent, w.id, 1, &fake).await;

    for (name, req) in [
        (
            "ml",
            CreateEnvironment {
                requirements: Some("pendulum\n".to_owned()),
                ..Default::default()
            },
        ),
        (
            "tuned",
            CreateEnvironment {
                airflow_config_overrides: Some(
                    [("core.parallelism".to_owned(), "8".to_owned())].into(),
                ),
                ..Default::default()
            },
        ),
    ] {
        let e = editor
            .create_environment(
                "data",
                &CreateEnvironment {
                    name: name.to_owned(),
                    ..req
                },
                None,
            )
            .await
            .unwrap()
            .environment;
        assert_ne!(e.id, w.id, "{name}");
        assert_eq!(e.revision, 1, "{name}");
        assert_eq!(
            e.webserver_url.as_deref(),
            Some(format!("/v1/tenants/data/environments/{name}/airflow/").as_str())
        );
    }
    // A name taken is a 409 even while one is prepared, and the prepared one stays.
    let taken = editor
        .create_environment(
            "data",
            &CreateEnvironment {
                name: "ml".to_owned(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(taken.status(), Some(409), "{taken}");
    let a = agent
        .poll(Duration::from_secs(1))
        .await
        .unwrap()
        .environments;
    assert!(
        a.iter().all(|e| e.id != w.id),
        "the prepared one is unchanged: {a:?}"
    );

    // The agent asking for none retires it.
    agent.register_warm(10, None, 0).await.unwrap();
    let a = agent
        .poll(Duration::from_secs(1))
        .await
        .unwrap()
        .environments;
    let retired = a.iter().find(|e| e.id == w.id).expect("the prepared one");
    assert!(retired.delete && retired.warm);
}

#[tokio::test]
async fn a_cell_keeps_no_more_prepared_environments_than_it_may() {
    let app = spawn_app().await;
    let agent = app.registered_agent("local", 10).await.unwrap();
    let err = agent.register_warm(10, None, 11).await.unwrap_err();
    let fields: Vec<_> = err
        .problem()
        .map(|p| p.errors.iter().map(|e| e.field.clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        (err.status(), fields),
        (Some(422), vec!["warm_pool".to_owned()])
    );
    // A full cell prepares none beyond its room.
    let mut agent = agent;
    agent.register_warm(2, None, 5).await.unwrap();
    assert_eq!(warm_ones(&mut agent).await.len(), 2);
}
