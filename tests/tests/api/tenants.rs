use hangar_tenants::api::{CreateTenant, CreateToken, Role};
use hangar_tests::{spawn_app, spawn_app_with};
use sqlx::Connection;

fn tenant(name: &str) -> CreateTenant {
    CreateTenant {
        name: name.to_owned(),
        display_name: Some("Data team".to_owned()),
    }
}

#[tokio::test]
async fn platform_admin_creates_and_reads_a_tenant() {
    let app = spawn_app().await;
    let t = app.admin.create_tenant(&tenant("data")).await.unwrap();
    assert_eq!(t.name, "data");
    assert_eq!(app.admin.get_tenant("data").await.unwrap(), t);
    let list = app.admin.list_tenants().await.unwrap();
    assert_eq!(list.tenants, vec![t]);
}

#[tokio::test]
async fn create_tenant_returns_409_when_name_taken() {
    let app = spawn_app().await;
    app.admin.create_tenant(&tenant("data")).await.unwrap();
    let err = app.admin.create_tenant(&tenant("data")).await.unwrap_err();
    let p = err.problem().unwrap();
    assert_eq!(p.status, 409);
    assert_eq!(p.errors[0].field, "name");
}

#[tokio::test]
async fn only_the_platform_admin_creates_tenants() {
    let app = spawn_app().await;
    let tenant_admin = app.tenant_with_role("data", Role::Admin).await.unwrap();
    let err = tenant_admin
        .create_tenant(&tenant("other"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    let err = app
        .anonymous()
        .create_tenant(&tenant("other"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    let err = app
        .admin
        .with_token("not-the-admin-token-at-all")
        .create_tenant(&tenant("other"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
}

#[tokio::test]
async fn a_token_is_shown_once_and_stored_only_as_a_hash() {
    let app = spawn_app().await;
    app.admin.create_tenant(&tenant("data")).await.unwrap();
    let created = app
        .admin
        .create_token(
            "data",
            &CreateToken {
                name: "ci".into(),
                role: Role::Editor,
            },
        )
        .await
        .unwrap();
    assert!(created.token.starts_with("hgr_"));
    let listed = app.admin.list_tokens("data").await.unwrap();
    let listing = serde_json::to_string(&listed).unwrap();
    assert!(!listing.contains(&created.token));
    assert!(created.token.starts_with(&listed.tokens[0].prefix));

    let mut db = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM tokens")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_ne!(stored, created.token.as_bytes());
    assert_eq!(stored.len(), 32, "a SHA-256 digest");
}

#[tokio::test]
async fn a_revoked_token_stops_working() {
    let app = spawn_app().await;
    let viewer = app.tenant_with_role("data", Role::Viewer).await.unwrap();
    viewer.list_environments("data").await.unwrap();
    let id = app.admin.list_tokens("data").await.unwrap().tokens[0].id;
    app.admin.revoke_token("data", id).await.unwrap();
    let err = viewer.list_environments("data").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    let audit = app.admin.audit("data").await.unwrap();
    assert!(audit.entries.iter().any(|e| e.action == "token.revoke"));
}

/// Waits until `c` is refused with a 401, failing after a few seconds: far less than the
/// token cache's time in the test below, so only the revocation notice can explain it.
async fn refused_soon(c: &hangar_client::Client) {
    let start = std::time::Instant::now();
    loop {
        if let Err(e) = c.list_environments("data").await {
            assert_eq!(e.status(), Some(401), "{e}");
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "still accepted after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_token_revoked_through_one_replica_stops_working_on_the_others_at_once() {
    let app = spawn_app_with(|s| s.token_cache_secs = 600).await;
    let other = app.replica(|s| s.token_cache_secs = 600).await;
    let token = app.token_with_role("data", Role::Viewer).await.unwrap();
    let on_other = hangar_tests::client(&other.address, Some(&token));
    // Cached by the other replica, then revoked through the first.
    on_other.list_environments("data").await.unwrap();
    let id = app.admin.list_tokens("data").await.unwrap().tokens[0].id;
    app.admin.revoke_token("data", id).await.unwrap();
    refused_soon(&on_other).await;

    // The same for every token of a deleted tenant.
    let token = app.token_with_role("gone", Role::Viewer).await.unwrap();
    let on_other = hangar_tests::client(&other.address, Some(&token));
    on_other.list_environments("gone").await.unwrap();
    app.admin.delete_tenant("gone").await.unwrap();
    let start = std::time::Instant::now();
    while on_other.list_environments("gone").await.is_ok() {
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let err = on_other.list_environments("gone").await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
}

#[tokio::test]
async fn tenant_admins_manage_their_own_tokens_but_editors_cannot() {
    let app = spawn_app().await;
    let admin = app.tenant_with_role("data", Role::Admin).await.unwrap();
    let made = admin
        .create_token(
            "data",
            &CreateToken {
                name: "bot".into(),
                role: Role::Viewer,
            },
        )
        .await
        .unwrap();
    assert_eq!(made.role, Role::Viewer);
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let err = editor
        .create_token(
            "data",
            &CreateToken {
                name: "x".into(),
                role: Role::Admin,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
}

#[tokio::test]
async fn a_tenant_is_deleted_only_once_it_has_no_environment_and_its_tokens_go_with_it() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let tenant_admin = app.tenant_with_role("data", Role::Admin).await.unwrap();
    hangar_tests::create_env(&editor, "data", "etl")
        .await
        .unwrap();

    // Only the platform admin deletes tenants.
    let err = tenant_admin.delete_tenant("data").await.unwrap_err();
    assert_eq!(err.status(), Some(403));

    // Not while an environment lives: nothing is deleted.
    let err = app.admin.delete_tenant("data").await.unwrap_err();
    let p = err.problem().unwrap();
    assert_eq!(p.status, 409);
    assert!(p.detail.contains("1 environment"), "{p:?}");
    assert_eq!(
        editor
            .list_environments("data")
            .await
            .unwrap()
            .environments
            .len(),
        1
    );

    // Once the environment is deleted (never placed on a cell: at once), the tenant goes, and
    // its tokens stop working at once.
    editor.delete_environment("data", "etl").await.unwrap();
    app.admin.delete_tenant("data").await.unwrap();
    assert_eq!(
        app.admin.get_tenant("data").await.unwrap_err().status(),
        Some(404)
    );
    assert_eq!(
        editor.list_environments("data").await.unwrap_err().status(),
        Some(401)
    );
    assert_eq!(
        app.admin.delete_tenant("data").await.unwrap_err().status(),
        Some(404)
    );

    // The platform's audit log keeps the deletion; the name is free again.
    let mut db = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let (action, target): (String, String) = sqlx::query_as(
        "SELECT action, target FROM audit_log WHERE tenant_id IS NULL AND action = 'tenant.delete'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(
        (action.as_str(), target.as_str()),
        ("tenant.delete", "data")
    );
    app.admin.create_tenant(&tenant("data")).await.unwrap();
}
