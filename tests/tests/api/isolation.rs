use hangar_tenants::api::{CreateEnvironment, Role, UpdateEnvironment};
use hangar_tests::spawn_app;
use reqwest::Method;

fn env(name: &str) -> CreateEnvironment {
    CreateEnvironment {
        name: name.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_tenant_token_gets_404_for_everything_of_another_tenant() {
    let app = spawn_app().await;
    let a = app.tenant_with_role("alpha", Role::Admin).await.unwrap();
    let b = app.tenant_with_role("beta", Role::Admin).await.unwrap();
    b.create_environment("beta", &env("secret"), None)
        .await
        .unwrap();

    let checks = [
        a.get_environment("beta", "secret").await.unwrap_err(),
        a.list_environments("beta").await.unwrap_err(),
        a.audit("beta").await.unwrap_err(),
        a.list_tokens("beta").await.unwrap_err(),
        a.get_tenant("beta").await.unwrap_err(),
        a.update_environment("beta", "secret", &UpdateEnvironment::default(), None)
            .await
            .unwrap_err(),
        a.delete_environment("beta", "secret").await.unwrap_err(),
        a.create_environment("beta", &env("mine"), None)
            .await
            .unwrap_err(),
    ];
    for err in checks {
        assert_eq!(err.status(), Some(404), "{err}");
    }
    // The answer for an existing tenant is the same as for one that does not exist.
    let missing = a.get_environment("nobody", "secret").await.unwrap_err();
    let hidden = a.get_environment("beta", "secret").await.unwrap_err();
    assert_eq!(
        missing.problem().unwrap().type_,
        hidden.problem().unwrap().type_
    );
    // Beta's environment is untouched.
    let still = b.get_environment("beta", "secret").await.unwrap();
    assert_eq!(still.revision, 1);
}

#[tokio::test]
async fn a_viewer_reads_but_mutating_gets_403() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    editor
        .create_environment("data", &env("etl"), None)
        .await
        .unwrap();
    let viewer = app.tenant_with_role("data", Role::Viewer).await.unwrap();

    viewer.get_environment("data", "etl").await.unwrap();
    viewer.list_environments("data").await.unwrap();
    let errs = [
        viewer
            .create_environment("data", &env("new"), None)
            .await
            .unwrap_err(),
        viewer
            .update_environment(
                "data",
                "etl",
                &UpdateEnvironment {
                    max_workers: Some(3),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap_err(),
        viewer.delete_environment("data", "etl").await.unwrap_err(),
        viewer.audit("data").await.unwrap_err(),
    ];
    for err in errs {
        assert_eq!(err.status(), Some(403), "{err}");
    }
    assert_eq!(
        viewer
            .get_environment("data", "etl")
            .await
            .unwrap()
            .revision,
        1
    );
}

#[tokio::test]
async fn no_token_gets_401_with_a_bearer_challenge() {
    let app = spawn_app().await;
    app.tenant_with_role("data", Role::Admin).await.unwrap();
    for (method, path) in [
        (Method::GET, "v1/tenants/data/environments"),
        (Method::POST, "v1/tenants/data/environments"),
        (Method::GET, "v1/tenants/data/environments/etl"),
        (Method::GET, "v1/tenants/data/audit"),
        (Method::GET, "v1/cells"),
    ] {
        let r = app.anonymous().request(method, path).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn cell_tokens_reach_only_their_own_cell() {
    let app = spawn_app().await;
    app.tenant_with_role("data", Role::Admin).await.unwrap();
    let agent = app.registered_agent("cell-a", 10).await.unwrap();
    app.registered_agent("cell-b", 10).await.unwrap();
    let err = agent.client.list_environments("data").await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    let err = agent
        .client
        .assignments("cell-b", 0, std::time::Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    let err = agent.client.list_cells().await.unwrap_err();
    assert_eq!(err.status(), Some(403));
}
