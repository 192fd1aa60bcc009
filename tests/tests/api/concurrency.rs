use std::collections::HashSet;

use hangar_tenants::api::{CreateEnvironment, Role, UpdateEnvironment};
use hangar_tests::spawn_app;

fn env(name: &str) -> CreateEnvironment {
    CreateEnvironment {
        name: name.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn two_patches_with_the_same_if_match_exactly_one_wins() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let created = editor
        .create_environment("data", &env("etl"), None)
        .await
        .unwrap();
    let rev = created.environment.revision;
    let patch = |n: u32| UpdateEnvironment {
        max_workers: Some(n),
        ..Default::default()
    };
    let (three, four) = (patch(3), patch(4));
    let (a, b) = tokio::join!(
        editor.update_environment("data", "etl", &three, Some(rev)),
        editor.update_environment("data", "etl", &four, Some(rev)),
    );
    let results = [a, b];
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let stale: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(ok.len(), 1, "{results:?}");
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].status(), Some(412));
    let now = editor.get_environment("data", "etl").await.unwrap();
    assert_eq!(now.revision, rev + 1);
    assert_eq!(now.spec.max_workers, ok[0].spec.max_workers);
}

#[tokio::test]
async fn an_idempotency_key_replay_creates_nothing_new() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let etl = env("etl");
    let (a, b) = tokio::join!(
        editor.create_environment("data", &etl, Some("create-etl-1")),
        editor.create_environment("data", &etl, Some("create-etl-1")),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.environment.id, b.environment.id);
    assert!(
        a.replayed != b.replayed,
        "exactly one of the two is a replay"
    );
    let again = editor
        .create_environment("data", &env("etl"), Some("create-etl-1"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.environment.id, a.environment.id);
    assert_eq!(
        editor
            .list_environments("data")
            .await
            .unwrap()
            .environments
            .len(),
        1
    );
    let creates = app
        .admin
        .audit("data")
        .await
        .unwrap()
        .entries
        .into_iter()
        .filter(|e| e.action == "environment.create")
        .count();
    assert_eq!(creates, 1);
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_body_is_refused() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    editor
        .create_environment("data", &env("etl"), Some("k1"))
        .await
        .unwrap();
    let err = editor
        .create_environment("data", &env("other"), Some("k1"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert_eq!(err.problem().unwrap().errors[0].field, "Idempotency-Key");
    assert_eq!(
        editor
            .list_environments("data")
            .await
            .unwrap()
            .environments
            .len(),
        1
    );
}

#[tokio::test]
async fn fifty_concurrent_creates_of_distinct_names_all_land() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    app.registered_agent("cell-1", 30).await.unwrap();
    app.registered_agent("cell-2", 30).await.unwrap();
    let creates = (0..50).map(|i| {
        let editor = editor.clone();
        async move {
            editor
                .create_environment("data", &env(&format!("env-{i}")), None)
                .await
        }
    });
    let results = futures::future::join_all(creates).await;
    let ids: HashSet<_> = results
        .iter()
        .map(|r| r.as_ref().unwrap().environment.id)
        .collect();
    assert_eq!(ids.len(), 50);
    let listed = editor.list_environments("data").await.unwrap().environments;
    assert_eq!(listed.len(), 50);
    // Placement stayed within each cell's room and spread the load.
    let on = |c: &str| {
        listed
            .iter()
            .filter(|e| e.cell.as_deref() == Some(c))
            .count()
    };
    assert_eq!(on("cell-1") + on("cell-2"), 50);
    assert!(on("cell-1") <= 30 && on("cell-2") <= 30);
}

#[tokio::test]
async fn placement_never_overfills_a_cell() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    app.registered_agent("small", 5).await.unwrap();
    let creates = (0..12).map(|i| {
        let editor = editor.clone();
        async move {
            editor
                .create_environment("data", &env(&format!("e{i}")), None)
                .await
        }
    });
    for r in futures::future::join_all(creates).await {
        r.unwrap();
    }
    let listed = editor.list_environments("data").await.unwrap().environments;
    let placed = listed.iter().filter(|e| e.cell.is_some()).count();
    assert_eq!(placed, 5);
    for e in listed.iter().filter(|e| e.cell.is_none()) {
        assert!(e
            .status_message
            .as_deref()
            .unwrap()
            .contains("waiting for a data-plane cell"));
    }
}
