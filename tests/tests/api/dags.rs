use hangar_tenants::api::{CreateEnvironment, Problem, Role};
use hangar_tests::spawn_app_with;
use reqwest::Method;

#[tokio::test]
async fn dag_files_round_trip_through_the_bucket_and_are_audited() {
    let bucket =
        std::env::temp_dir().join(format!("hangar-bucket-{}", uuid::Uuid::new_v4().simple()));
    let dir = bucket.clone();
    let app = spawn_app_with(move |s| s.bucket = Some(format!("file://{}", dir.display()))).await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    editor
        .create_environment(
            "data",
            &CreateEnvironment {
                name: "etl".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let dags = "v1/tenants/data/environments/etl/dags";
    let put = editor
        .request(Method::PUT, &format!("{dags}/team/etl.py"))
        .body("print('hi')\n")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let stored = bucket.join("tenants/data/environments/etl/dags/team/etl.py");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "print('hi')\n");
    let got = editor
        .request(Method::GET, &format!("{dags}/team/etl.py"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.text().await.unwrap(), "print('hi')\n");
    let list: serde_json::Value = editor
        .request(Method::GET, dags)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["files"][0]["path"], "team/etl.py");

    // A path that would escape the prefix is refused by name and writes nothing.
    let escape = editor
        .request(Method::PUT, &format!("{dags}/%2Fetc%2Fcron.d%2Fx"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(escape.status(), 422);
    let p: Problem = escape.json().await.unwrap();
    assert_eq!(p.errors[0].field, "path");

    // A viewer reads but cannot write; another tenant sees nothing.
    let viewer = app.tenant_with_role("data", Role::Viewer).await.unwrap();
    assert_eq!(
        viewer
            .request(Method::GET, dags)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        viewer
            .request(Method::PUT, &format!("{dags}/v.py"))
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let other = app.tenant_with_role("other", Role::Admin).await.unwrap();
    assert_eq!(
        other
            .request(Method::GET, &format!("{dags}/team/etl.py"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Over the size limit: 413, and the stored file is still the previous one, whole.
    let big = editor
        .request(Method::PUT, &format!("{dags}/team/etl.py"))
        .body(vec![b'#'; 10 * 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "print('hi')\n");

    // The environment shows where its files are, for the cloud's own tools.
    let env = editor.get_environment("data", "etl").await.unwrap();
    let b = env.bucket.expect("bucket URLs");
    assert_eq!(
        b.dags,
        format!(
            "file://{}/tenants/data/environments/etl/dags/",
            bucket.display()
        )
    );
    assert!(
        b.requirements
            .ends_with("/environments/etl/requirements.txt"),
        "{b:?}"
    );

    // A local-folder bucket has no pre-signed upload URLs: said so, by name.
    let err = editor
        .dag_upload_url("data", "etl", "team/x.py")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert!(err.to_string().contains("PUT"), "{err}");

    let del = editor
        .request(Method::DELETE, &format!("{dags}/team/etl.py"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert!(!stored.exists());
    let actions: Vec<String> = app
        .admin
        .audit("data")
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"dag.put".to_owned()) && actions.contains(&"dag.delete".to_owned()),
        "{actions:?}"
    );
    let _ = std::fs::remove_dir_all(&bucket);
}

/// What a local-folder bucket cannot hold is a conflict, not a failure; what it does not hold
/// is a 404; a task log's path is read only.
#[tokio::test]
async fn paths_that_clash_are_conflicts_and_task_log_paths_are_read_only() {
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let app = spawn_app_with(move |s| s.bucket = Some(url)).await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    hangar_tests::create_env(&editor, "data", "etl")
        .await
        .unwrap();
    let dags = "v1/tenants/data/environments/etl/dags";
    let send = |method: Method, path: &str| {
        editor
            .request(method, &format!("{dags}/{path}"))
            .body("x = 1\n")
            .send()
    };
    assert_eq!(send(Method::PUT, "a.py").await.unwrap().status(), 201);
    assert_eq!(send(Method::PUT, "lib/b.py").await.unwrap().status(), 201);
    // An empty file is a file (`__init__.py`).
    let empty = editor
        .request(Method::PUT, &format!("{dags}/lib/__init__.py"))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 201);

    for taken in ["a.py/c.py", "lib"] {
        let r = send(Method::PUT, taken).await.unwrap();
        assert_eq!(r.status(), 409, "{taken}");
        let p: Problem = r.json().await.unwrap();
        assert_eq!(p.errors[0].field, "path", "{p:?}");
    }
    for missing in [Method::GET, Method::DELETE] {
        let r = send(missing.clone(), "a.py/c.py").await.unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }

    for method in [Method::PUT, Method::DELETE, Method::OPTIONS] {
        let r = send(method.clone(), "etl/runs/r1/tasks/t1/logs")
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(
            r.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some("GET,HEAD"),
            "{method}"
        );
        let p: Problem = r.json().await.unwrap();
        assert!(p.detail.contains("does not take"), "{p:?}");
    }
    // The ordinary DAG file path still says what it takes.
    let r = send(Method::OPTIONS, "a.py").await.unwrap();
    assert_eq!(r.status(), 405);
    let allow = r
        .headers()
        .get("allow")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(allow.contains("PUT") && allow.contains("DELETE"), "{allow}");
}
