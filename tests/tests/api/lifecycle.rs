use std::time::{Duration, Instant};

use hangar_tenants::api::{CreateEnvironment, Role, UpdateEnvironment};
use hangar_tenants::{ComponentStatus, FailedApply, ObservedState, Phase};
use hangar_tests::{healthy, spawn_app};

fn env(name: &str) -> CreateEnvironment {
    CreateEnvironment {
        name: name.to_owned(),
        ..Default::default()
    }
}

fn bump_workers(n: u32) -> UpdateEnvironment {
    UpdateEnvironment {
        max_workers: Some(n),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_agent_drives_create_update_and_delete() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let mut agent = app.registered_agent("local", 10).await.unwrap();

    let created = editor
        .create_environment("data", &env("etl"), None)
        .await
        .unwrap()
        .environment;
    assert_eq!(created.phase, Phase::Creating);
    assert_eq!(created.cell.as_deref(), Some("local"));

    let a = agent.poll(Duration::from_secs(5)).await.unwrap();
    assert_eq!(a.environments.len(), 1);
    let assigned = &a.environments[0];
    assert_eq!(
        (assigned.id, assigned.revision, assigned.delete),
        (created.id, 1, false)
    );
    assert_eq!(assigned.spec, created.spec);

    // Components still starting: not yet available.
    let mut starting = healthy(1);
    starting.components[0].healthy = false;
    let e = agent.report(created.id, &starting).await.unwrap();
    assert_eq!(e.phase, Phase::Creating);
    let e = agent.report(created.id, &healthy(1)).await.unwrap();
    assert_eq!(e.phase, Phase::Available);

    let updated = editor
        .update_environment("data", "etl", &bump_workers(4), Some(1))
        .await
        .unwrap();
    assert_eq!((updated.phase, updated.revision), (Phase::Updating, 2));
    let a = agent.poll(Duration::from_secs(5)).await.unwrap();
    assert_eq!(a.environments[0].revision, 2);
    assert_eq!(a.environments[0].spec.max_workers, 4);
    // The old revision still reported healthy keeps it UPDATING, the new one makes it AVAILABLE.
    assert_eq!(
        agent.report(created.id, &healthy(1)).await.unwrap().phase,
        Phase::Updating
    );
    assert_eq!(
        agent.report(created.id, &healthy(2)).await.unwrap().phase,
        Phase::Available
    );

    let deleting = editor.delete_environment("data", "etl").await.unwrap();
    assert_eq!(deleting.phase, Phase::Deleting);
    let a = agent.poll(Duration::from_secs(5)).await.unwrap();
    assert!(a.environments[0].delete);
    let gone = ObservedState {
        deleted: true,
        ..Default::default()
    };
    assert_eq!(
        agent.report(created.id, &gone).await.unwrap().phase,
        Phase::Deleted
    );
    assert_eq!(
        editor.get_environment("data", "etl").await.unwrap().phase,
        Phase::Deleted
    );
    assert!(editor
        .list_environments("data")
        .await
        .unwrap()
        .environments
        .is_empty());

    // The name is free again, and the audit log tells the whole story.
    let again = editor
        .create_environment("data", &env("etl"), None)
        .await
        .unwrap();
    assert_ne!(again.environment.id, created.id);
    let phases: Vec<String> = app
        .admin
        .audit("data")
        .await
        .unwrap()
        .entries
        .into_iter()
        .rev()
        .filter(|e| e.action == "environment.phase")
        .map(|e| e.details["to"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(phases, vec!["AVAILABLE", "AVAILABLE", "DELETED"]);
}

#[tokio::test]
async fn a_failed_update_is_update_failed_with_the_previous_revision_running() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let mut agent = app.registered_agent("local", 10).await.unwrap();
    let id = editor
        .create_environment("data", &env("etl"), None)
        .await
        .unwrap()
        .environment
        .id;
    agent.poll(Duration::from_secs(5)).await.unwrap();
    agent.report(id, &healthy(1)).await.unwrap();

    let bad = UpdateEnvironment {
        requirements: Some("no-such-package==0\n".to_owned()),
        ..Default::default()
    };
    editor
        .update_environment("data", "etl", &bad, None)
        .await
        .unwrap();
    agent.poll(Duration::from_secs(5)).await.unwrap();
    let mut observed = healthy(1);
    observed.failed = Some(FailedApply {
        revision: 2,
        message: "No solution found when resolving dependencies: no-such-package==0".to_owned(),
    });
    let e = agent.report(id, &observed).await.unwrap();
    assert_eq!(e.phase, Phase::UpdateFailed);
    assert!(e.status_message.unwrap().contains("no-such-package"));
    assert_eq!(
        e.observed.unwrap().revision,
        Some(1),
        "the previous revision still runs"
    );

    // A corrected update recovers it.
    editor
        .update_environment(
            "data",
            "etl",
            &UpdateEnvironment {
                requirements: Some(String::new()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    agent.poll(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        agent.report(id, &healthy(3)).await.unwrap().phase,
        Phase::Available
    );
}

#[tokio::test]
async fn a_component_going_down_makes_it_unavailable_until_it_recovers() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let mut agent = app.registered_agent("local", 10).await.unwrap();
    let id = editor
        .create_environment("data", &env("etl"), None)
        .await
        .unwrap()
        .environment
        .id;
    agent.poll(Duration::from_secs(5)).await.unwrap();
    agent.report(id, &healthy(1)).await.unwrap();
    let mut down = healthy(1);
    down.components[1] = ComponentStatus {
        name: "scheduler-0".into(),
        healthy: false,
        message: Some("restarting after exit code 137".into()),
    };
    let e = agent.report(id, &down).await.unwrap();
    assert_eq!(e.phase, Phase::Unavailable);
    assert!(e.status_message.unwrap().contains("scheduler-0"));
    assert_eq!(
        agent.report(id, &healthy(1)).await.unwrap().phase,
        Phase::Available
    );
}

#[tokio::test]
async fn without_a_cell_an_environment_waits_in_creating_and_is_placed_on_registration() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let e = editor
        .create_environment("data", &env("etl"), None)
        .await
        .unwrap()
        .environment;
    assert_eq!(e.phase, Phase::Creating);
    assert_eq!(e.cell, None);
    assert!(e.status_message.unwrap().contains("no registered cell"));

    let mut agent = app.registered_agent("late", 10).await.unwrap();
    let e = editor.get_environment("data", "etl").await.unwrap();
    assert_eq!(e.cell.as_deref(), Some("late"));
    assert_eq!(e.status_message, None);
    let a = agent.poll(Duration::from_secs(5)).await.unwrap();
    assert_eq!(a.environments[0].id, e.id);
}

/// An environment created while no cell looked live (here: its heartbeat lapsed; in life: a
/// cell registering at the same moment) is placed by the cell's next poll, not stranded until
/// the cell registers again.
#[tokio::test]
async fn a_waiting_environment_is_placed_when_a_cell_polls() {
    let app = hangar_tests::spawn_app_with(|s| s.cell_ttl_secs = 1).await;
    let mut agent = app.registered_agent("edge", 10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let e = editor
        .create_environment("data", &env("etl"), None)
        .await
        .unwrap()
        .environment;
    assert_eq!(e.cell, None, "the cell was not live");
    let a = agent.poll(Duration::from_secs(5)).await.unwrap();
    assert_eq!(a.environments.len(), 1);
    assert_eq!(a.environments[0].id, e.id);
    let e = editor.get_environment("data", "etl").await.unwrap();
    assert_eq!(e.cell.as_deref(), Some("edge"));
}

#[tokio::test]
async fn deleting_an_environment_that_never_ran_is_immediate() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    editor
        .create_environment("data", &env("etl"), None)
        .await
        .unwrap();
    let e = editor.delete_environment("data", "etl").await.unwrap();
    assert_eq!(e.phase, Phase::Deleted);
    let err = editor.delete_environment("data", "etl").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[tokio::test]
async fn a_long_poll_wakes_as_soon_as_the_cell_has_a_change() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let mut agent = app.registered_agent("local", 10).await.unwrap();
    assert!(agent
        .poll(Duration::ZERO)
        .await
        .unwrap()
        .environments
        .is_empty());
    let start = Instant::now();
    let poll = tokio::spawn(async move {
        let a = agent.poll(Duration::from_secs(30)).await.unwrap();
        (a, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    editor
        .create_environment("data", &env("etl"), None)
        .await
        .unwrap();
    let (a, woke) = poll.await.unwrap();
    assert_eq!(a.environments.len(), 1);
    assert!(
        woke - start < Duration::from_secs(5),
        "woke after {:?}",
        woke - start
    );
}

#[tokio::test]
async fn an_agent_only_sees_changes_after_its_cursor() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let mut agent = app.registered_agent("local", 10).await.unwrap();
    for n in ["a", "b", "c"] {
        editor
            .create_environment("data", &env(n), None)
            .await
            .unwrap();
    }
    assert_eq!(
        agent.poll(Duration::ZERO).await.unwrap().environments.len(),
        3
    );
    assert!(agent
        .poll(Duration::ZERO)
        .await
        .unwrap()
        .environments
        .is_empty());
    editor
        .update_environment("data", "b", &bump_workers(2), None)
        .await
        .unwrap();
    let a = agent.poll(Duration::ZERO).await.unwrap();
    assert_eq!(
        a.environments
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        vec!["b"]
    );
    // An update that changes nothing makes no revision and wakes nobody.
    let same = editor
        .update_environment("data", "b", &bump_workers(2), None)
        .await
        .unwrap();
    assert_eq!(same.revision, 2);
    assert!(agent
        .poll(Duration::ZERO)
        .await
        .unwrap()
        .environments
        .is_empty());
}

#[tokio::test]
async fn an_agent_cannot_report_on_an_environment_of_another_cell() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    app.registered_agent("one", 1).await.unwrap();
    let other = app.registered_agent("two", 1).await.unwrap();
    let first = editor
        .create_environment("data", &env("a"), None)
        .await
        .unwrap()
        .environment;
    let second = editor
        .create_environment("data", &env("b"), None)
        .await
        .unwrap()
        .environment;
    let foreign = if first.cell.as_deref() == Some("two") {
        second
    } else {
        first
    };
    let err = other.report(foreign.id, &healthy(1)).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    assert_eq!(
        editor
            .get_environment("data", &foreign.name)
            .await
            .unwrap()
            .phase,
        Phase::Creating
    );
}

#[tokio::test]
async fn an_environments_secrets_reach_only_its_cell_and_are_sealed_at_rest() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let mut agent = app.registered_agent("local", 10).await.unwrap();
    let created = editor
        .create_environment("data", &env("etl"), None)
        .await
        .unwrap()
        .environment;

    let first = agent.poll(Duration::from_secs(5)).await.unwrap();
    let secrets = first.environments[0]
        .secrets
        .clone()
        .expect("secrets for the agent");
    assert_eq!(secrets.fernet_key.len(), 44, "urlsafe base64 of 32 bytes");
    assert_ne!(secrets.db_password, secrets.broker_password);

    // Stable across revisions, so an update never rotates a running environment's keys.
    editor
        .update_environment("data", "etl", &bump_workers(3), None)
        .await
        .unwrap();
    let second = agent.poll(Duration::from_secs(5)).await.unwrap();
    assert_eq!(second.environments[0].secrets.as_ref(), Some(&secrets));

    // Never shown to the tenant.
    let r = editor
        .request(reqwest::Method::GET, "v1/tenants/data/environments/etl")
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(
        !body.contains(&secrets.fernet_key) && !body.contains("secrets"),
        "{body}"
    );

    // Sealed in the database: no secret appears in the stored bytes.
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secrets FROM environments WHERE id = $1")
        .bind(created.id)
        .fetch_one(&mut db)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&stored);
    for s in [
        &secrets.fernet_key,
        &secrets.db_password,
        &secrets.jwt_secret,
    ] {
        assert!(!text.contains(s.as_str()));
    }
}
