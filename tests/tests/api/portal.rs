//! The portal over plain HTTP: sign-in, sessions and CSRF, every form's validation and role
//! rule, against a real control plane and Postgres. (The browser tests drive the same pages
//! in Chromium against a real Airflow.)

use hangar_tenants::api::{CreateEnvironment, Role, UpdateEnvironment};
use hangar_tests::portal::Visitor;
use hangar_tests::{spawn_app, spawn_app_with, TestApp, ADMIN_TOKEN};
use reqwest::StatusCode;

async fn with_env(app: &TestApp, tenant: &str, env: &str) {
    app.tenant_with_role(tenant, Role::Admin)
        .await
        .unwrap()
        .create_environment(
            tenant,
            &CreateEnvironment {
                name: env.into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
}

async fn env_names(app: &TestApp, tenant: &str) -> Vec<String> {
    app.admin
        .list_environments(tenant)
        .await
        .unwrap()
        .environments
        .into_iter()
        .map(|e| e.name)
        .collect()
}

#[tokio::test]
async fn signing_in_opens_a_strict_http_only_session_and_signing_out_ends_it() {
    let app = spawn_app().await;
    with_env(&app, "acme", "etl").await;
    let token = app.token_with_role("acme", Role::Viewer).await.unwrap();
    let mut v = Visitor::new(&app.address);

    // Signed out: pages send the browser to the sign-in form, and back afterwards.
    let r = v.get("/tenants/acme").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/login?next=%2Ftenants%2Facme"));

    // A wrong token: the message is next to the field, nothing is set.
    let r = v.sign_in("hgr_wrongwrongwrongwrongwrongwrongwr").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let msg = r.text_of("token-error").unwrap();
    assert!(msg.contains("unknown, revoked or mistyped"), "{msg}");
    assert!(!v.cookies.iter().any(|(k, _)| k == "hangar_portal"));

    let r = v.sign_in(&token).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/tenants/acme"));
    let set = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("hangar_portal="))
        .unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(part), "{set}");
    }
    let page = v.get("/tenants/acme").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("data-env=\"etl\""), "{}", page.body);
    assert!(page.body.contains("acme (viewer)"));
    let cookie = v.cookies.clone();

    // Signing out without the CSRF token changes nothing.
    let r = v.post_raw("/logout", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(v.get("/tenants/acme").await.status, StatusCode::OK);

    let r = v.post("/logout", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/login"));
    // The old cookie is of no use afterwards: the session is gone server-side.
    v.cookies = cookie;
    let r = v.get("/tenants/acme").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location.unwrap().starts_with("/login"));
}

#[tokio::test]
async fn a_sign_in_form_from_elsewhere_is_refused() {
    let app = spawn_app().await;
    let token = app.token_with_role("acme", Role::Viewer).await.unwrap();
    // Posted without the cookie the form was shown with (another site's form).
    let mut v = Visitor::new(&app.address);
    let r = v
        .post_raw("/login", &[("token", &token), ("csrf_token", "forged")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!v.cookies.iter().any(|(k, _)| k == "hangar_portal"));
}

#[tokio::test]
async fn sign_in_goes_back_only_to_a_page_of_the_portal() {
    let app = spawn_app().await;
    let token = app.token_with_role("acme", Role::Viewer).await.unwrap();
    let mut v = Visitor::new(&app.address);
    v.get("/login").await;
    let r = v
        .post(
            "/login",
            &[("token", &token), ("next", "//evil.example.com/")],
        )
        .await;
    assert_eq!(r.location.as_deref(), Some("/tenants/acme"));
    let mut v = Visitor::new(&app.address);
    v.get("/login").await;
    let r = v
        .post(
            "/login",
            &[
                ("token", &token),
                ("next", "/tenants/acme/environments/new"),
            ],
        )
        .await;
    assert_eq!(
        r.location.as_deref(),
        Some("/tenants/acme/environments/new")
    );
}

#[tokio::test]
async fn a_cell_token_cannot_sign_in() {
    let app = spawn_app().await;
    let cell = app
        .admin
        .create_cell(&hangar_tenants::api::CreateCell {
            name: "local".into(),
            runtime: hangar_tenants::api::Runtime::Process,
        })
        .await
        .unwrap();
    let mut v = Visitor::new(&app.address);
    let r = v.sign_in(&cell.token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text_of("token-error").unwrap().contains("cell"));
}

#[tokio::test]
async fn a_sign_in_link_works_once() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("acme", Role::Editor).await.unwrap();
    let link = editor.portal_login_link("acme").await.unwrap();
    assert!(link.login_path.starts_with("/login/link?token=hgl_"));
    let mut v = Visitor::new(&app.address);
    // A page that moves on by itself (a redirect would lose the strict cookie when the link
    // is followed from another site), without a referrer that would carry the link.
    let r = v.get(&link.login_path).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body
            .contains(r#"<meta http-equiv="refresh" content="0; url=&#x2F;tenants&#x2F;acme">"#),
        "{}",
        r.body
    );
    assert!(r.body.contains("Continue to Hangar"));
    assert_eq!(r.header("referrer-policy").as_deref(), Some("no-referrer"));
    let page = v.get("/tenants/acme").await;
    assert!(page.body.contains("acme (editor)"), "{}", page.body);

    let mut other = Visitor::new(&app.address);
    let r = other.get(&link.login_path).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text_of("token-error").unwrap().contains("used already"));
    // Another tenant's link cannot be asked for.
    assert!(editor.portal_login_link("other").await.is_err());
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let app = spawn_app().await;
    let token = app.token_with_role("acme", Role::Viewer).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, &token).await;
    assert_eq!(v.get("/tenants/acme").await.status, StatusCode::OK);
    let db = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    sqlx::query("UPDATE portal_sessions SET expires_at = now() - interval '1 second'")
        .execute(&db)
        .await
        .unwrap();
    let r = v.get("/tenants/acme").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location.unwrap().starts_with("/login"));
}

#[tokio::test]
async fn a_revoked_token_ends_its_sessions() {
    let app = spawn_app_with(|s| s.token_cache_secs = 0).await;
    let admin = app.tenant_with_role("acme", Role::Admin).await.unwrap();
    let viewer = admin
        .create_token(
            "acme",
            &hangar_tenants::api::CreateToken {
                name: "v".into(),
                role: Role::Viewer,
            },
        )
        .await
        .unwrap();
    let mut v = Visitor::signed_in(&app.address, &viewer.token).await;
    assert_eq!(v.get("/tenants/acme").await.status, StatusCode::OK);
    admin.revoke_token("acme", viewer.id).await.unwrap();
    assert_eq!(v.get("/tenants/acme").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_create_form_names_each_bad_field_and_keeps_what_was_typed() {
    let app = spawn_app().await;
    let token = app.token_with_role("acme", Role::Editor).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, &token).await;
    let form = v.get("/tenants/acme/environments/new").await;
    assert_eq!(form.status, StatusCode::OK);
    for field in [
        "name",
        "airflow_version",
        "environment_class",
        "executor",
        "min_workers",
        "max_workers",
        "worker_weight",
        "hibernate_after_idle_minutes",
        "schedulers",
        "airflow_config_overrides",
        "env_vars",
        "requirements",
        "tags",
    ] {
        assert!(
            form.body.contains(&format!("name=\"{field}\"")),
            "{field} missing from the form"
        );
        assert!(
            form.body.contains(&format!("<label for=\"{field}\"")),
            "{field} has no label"
        );
    }

    let r = v
        .post(
            "/tenants/acme/environments",
            &[
                ("name", "Bad_Name"),
                ("min_workers", "two"),
                ("tags", "team"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text_of("min_workers-error")
        .unwrap()
        .contains("whole number"));
    assert!(r.text_of("tags-error").unwrap().contains("line 1"));
    assert!(r.body.contains("value=\"Bad_Name\""), "kept what was typed");

    // The service's own checks, next to their fields too.
    let r = v
        .post(
            "/tenants/acme/environments",
            &[
                ("name", "Bad_Name"),
                ("min_workers", "5"),
                ("max_workers", "2"),
                ("airflow_config_overrides", "core.executor=LocalExecutor"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.has_id("name-error"), "{}", r.body);
    assert!(r.has_id("airflow_config_overrides-error"), "{}", r.body);
    assert!(
        env_names(&app, "acme").await.is_empty(),
        "nothing was created"
    );

    let r = v
        .post(
            "/tenants/acme/environments",
            &[
                ("name", "etl"),
                ("environment_class", "medium"),
                ("max_workers", "3"),
                ("env_vars", "TEAM=data\n"),
                ("tags", "owner=data"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        r.location.as_deref(),
        Some("/tenants/acme/environments/etl")
    );
    let e = app.admin.get_environment("acme", "etl").await.unwrap();
    assert_eq!(e.spec.max_workers, 3);
    assert_eq!(e.spec.env_vars["TEAM"], "data");
    assert_eq!(e.spec.tags["owner"], "data");

    // The same name again: a conflict, next to the name.
    let r = v
        .post("/tenants/acme/environments", &[("name", "etl")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.has_id("name-error"), "{}", r.body);
}

#[tokio::test]
async fn state_changing_forms_without_the_csrf_token_change_nothing() {
    let app = spawn_app().await;
    with_env(&app, "acme", "etl").await;
    let mut v = Visitor::signed_in(&app.address, ADMIN_TOKEN).await;
    let token_id = app
        .admin
        .create_token(
            "acme",
            &hangar_tenants::api::CreateToken {
                name: "keep".into(),
                role: Role::Viewer,
            },
        )
        .await
        .unwrap()
        .id
        .to_string();
    let env = "/tenants/acme/environments/etl";
    let revoke = format!("/tenants/acme/tokens/{token_id}/revoke");
    let forms: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/tenants/acme/environments", vec![("name", "new")]),
        (env, vec![("revision", "1"), ("max_workers", "4")]),
        (
            "/tenants/acme/environments/etl/delete",
            vec![("confirm", "etl")],
        ),
        ("/tenants/acme/environments/etl/open-airflow", vec![]),
        ("/tenants/acme/environments/etl/hibernate", vec![]),
        ("/tenants/acme/environments/etl/wake", vec![]),
        (
            "/tenants/acme/environments/etl/dags/delete",
            vec![("path", "x.py")],
        ),
        (
            "/tenants/acme/environments/etl/cli",
            vec![("args", "dags list")],
        ),
        (
            "/tenants/acme/tokens",
            vec![("name", "new"), ("role", "admin")],
        ),
        (&revoke, vec![]),
        ("/admin/tenants", vec![("name", "other")]),
        ("/logout", vec![]),
    ];
    for (path, fields) in &forms {
        for csrf in [None, Some("not-the-token")] {
            let mut all = fields.clone();
            if let Some(c) = csrf {
                all.push(("csrf_token", c));
            }
            let r = v.post_raw(path, &all).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with {csrf:?}");
        }
    }
    assert_eq!(env_names(&app, "acme").await, ["etl"]);
    let e = app.admin.get_environment("acme", "etl").await.unwrap();
    assert_eq!((e.revision, e.spec.max_workers), (1, 10));
    let tokens = app.admin.list_tokens("acme").await.unwrap().tokens;
    assert!(tokens.iter().all(|t| t.revoked_at.is_none()));
    assert!(!tokens.iter().any(|t| t.name == "new"));
    assert!(app.admin.get_tenant("other").await.is_err());
    assert_eq!(
        v.get("/tenants/acme").await.status,
        StatusCode::OK,
        "still signed in"
    );
}

#[tokio::test]
async fn viewers_see_no_controls_and_their_forged_posts_are_refused() {
    let app = spawn_app().await;
    with_env(&app, "acme", "etl").await;
    let token = app.token_with_role("acme", Role::Viewer).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, &token).await;
    let list = v.get("/tenants/acme").await;
    assert!(!list.has_id("create-environment"), "{}", list.body);
    assert!(
        !list.body.contains("/tokens\""),
        "no tokens link for a viewer"
    );
    let page = v.get("/tenants/acme/environments/etl").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.has_id("update-form"));
    assert!(!page.has_id("delete-environment"));
    assert!(page.has_id("open-airflow"), "viewers may open Airflow");
    assert!(!page.has_id("hibernate") && !page.has_id("wake"));

    // Forged with a valid CSRF token: the service refuses by role, nothing changes.
    for (path, fields) in [
        ("/tenants/acme/environments", vec![("name", "new")]),
        (
            "/tenants/acme/environments/etl",
            vec![("revision", "1"), ("max_workers", "4")],
        ),
        (
            "/tenants/acme/environments/etl/delete",
            vec![("confirm", "etl")],
        ),
        (
            "/tenants/acme/environments/etl/cli",
            vec![("args", "dags list")],
        ),
        ("/tenants/acme/environments/etl/hibernate", vec![]),
        ("/tenants/acme/environments/etl/wake", vec![]),
        (
            "/tenants/acme/tokens",
            vec![("name", "x"), ("role", "admin")],
        ),
        ("/admin/tenants", vec![("name", "other")]),
    ] {
        let r = v.post(path, &fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
    }
    assert_eq!(env_names(&app, "acme").await, ["etl"]);
    let e = app.admin.get_environment("acme", "etl").await.unwrap();
    assert_eq!(e.revision, 1);
    assert_eq!(
        v.get("/tenants/acme/tokens").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        v.get("/tenants/acme/audit").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(v.get("/admin").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn another_tenants_pages_are_not_found() {
    let app = spawn_app().await;
    with_env(&app, "other", "secret").await;
    let token = app.token_with_role("acme", Role::Admin).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, &token).await;
    for path in [
        "/tenants/other",
        "/tenants/other/environments/secret",
        "/tenants/other/environments/secret/logs",
        "/tenants/other/environments/secret/dags",
        "/tenants/other/tokens",
        "/tenants/other/events",
    ] {
        let r = v.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!r.body.contains("secret\""), "{path} leaks: {}", r.body);
    }
    let r = v
        .post(
            "/tenants/other/environments/secret/delete",
            &[("confirm", "secret")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(env_names(&app, "other").await, ["secret"]);
}

#[tokio::test]
async fn an_update_applies_to_the_revision_it_was_opened_at_and_a_conflict_says_what_changed() {
    let app = spawn_app().await;
    with_env(&app, "acme", "etl").await;
    let token = app.token_with_role("acme", Role::Editor).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, &token).await;
    let page = v.get("/tenants/acme/environments/etl").await;
    assert_eq!(page.hidden("revision").as_deref(), Some("1"));

    // Someone else changes it meanwhile.
    app.admin
        .update_environment(
            "acme",
            "etl",
            &UpdateEnvironment {
                max_workers: Some(4),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let r = v
        .post(
            "/tenants/acme/environments/etl",
            &[
                ("revision", "1"),
                ("min_workers", "1"),
                ("max_workers", "10"),
                ("requirements", ""),
                ("env_vars", ""),
                ("tags", ""),
                ("airflow_config_overrides", ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let msg = r.text_of("revision-error").unwrap();
    assert!(msg.contains("max_workers"), "{msg}");
    assert_eq!(
        r.hidden("revision").as_deref(),
        Some("2"),
        "sending again applies to the current one"
    );
    assert_eq!(
        app.admin
            .get_environment("acme", "etl")
            .await
            .unwrap()
            .revision,
        2
    );

    let r = v
        .post(
            "/tenants/acme/environments/etl",
            &[
                ("revision", "2"),
                ("min_workers", "1"),
                ("max_workers", "x"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.has_id("max_workers-error"));

    let r = v
        .post(
            "/tenants/acme/environments/etl",
            &[
                ("revision", "2"),
                ("min_workers", "1"),
                ("max_workers", "6"),
                ("requirements", "pyjokes==0.8.3\r\n"),
                ("env_vars", ""),
                ("tags", ""),
                ("airflow_config_overrides", ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let e = app.admin.get_environment("acme", "etl").await.unwrap();
    assert_eq!(
        (e.revision, e.spec.min_workers, e.spec.max_workers),
        (3, 1, 6)
    );
    assert_eq!(e.spec.requirements, "pyjokes==0.8.3\n");
    // The history shows every revision.
    let page = v.get("/tenants/acme/environments/etl").await;
    assert_eq!(
        page.body.matches("<td>update</td>").count(),
        2,
        "{}",
        page.body
    );
    assert_eq!(page.body.matches("<td>create</td>").count(), 1);
}

#[tokio::test]
async fn deleting_takes_the_name_typed_again() {
    let app = spawn_app().await;
    with_env(&app, "acme", "etl").await;
    let token = app.token_with_role("acme", Role::Editor).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, &token).await;
    assert_eq!(
        v.get("/tenants/acme/environments/etl/delete").await.status,
        StatusCode::OK
    );
    let r = v
        .post(
            "/tenants/acme/environments/etl/delete",
            &[("confirm", "et")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.has_id("confirm-error"));
    assert_eq!(
        app.admin
            .get_environment("acme", "etl")
            .await
            .unwrap()
            .phase,
        hangar_tenants::Phase::Creating
    );
    let r = v
        .post(
            "/tenants/acme/environments/etl/delete",
            &[("confirm", "etl")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/tenants/acme"));
    let e = app.admin.get_environment("acme", "etl").await;
    assert!(
        e.as_ref().map_or(true, |e| matches!(
            e.phase,
            hangar_tenants::Phase::Deleting | hangar_tenants::Phase::Deleted
        )),
        "{e:?}"
    );
}

#[tokio::test]
async fn tenant_admins_create_tokens_shown_once_and_revoke_them() {
    let app = spawn_app().await;
    let token = app.token_with_role("acme", Role::Admin).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, &token).await;
    assert_eq!(v.get("/tenants/acme/tokens").await.status, StatusCode::OK);
    let r = v
        .post("/tenants/acme/tokens", &[("name", "ci"), ("role", "root")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("must be viewer, editor or admin"));
    let r = v
        .post(
            "/tenants/acme/tokens",
            &[("name", "ci"), ("role", "editor")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let secret = r.text_of("new-token").unwrap();
    assert!(secret.starts_with("hgr_"), "{secret}");
    // It works, and is not shown again.
    let ci = hangar_tests::client(&app.address, Some(&secret));
    ci.list_environments("acme").await.unwrap();
    assert!(!v.get("/tenants/acme/tokens").await.body.contains(&secret));

    let id = app
        .admin
        .list_tokens("acme")
        .await
        .unwrap()
        .tokens
        .into_iter()
        .find(|t| t.name == "ci")
        .unwrap()
        .id;
    v.get("/tenants/acme/tokens").await;
    let r = v
        .post(&format!("/tenants/acme/tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let audit = v.get("/tenants/acme/audit").await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(
        audit.body.contains("<td>token.revoke</td>"),
        "{}",
        audit.body
    );
}

#[tokio::test]
async fn the_platform_admin_creates_tenants_and_sees_cells_with_their_pools() {
    let app = spawn_app().await;
    app.registered_agent("local", 4).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, ADMIN_TOKEN).await;
    let page = v.get("/admin").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<td>local</td>"), "{}", page.body);
    let r = v.post("/admin/tenants", &[("name", "Bad Name")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("value=\"Bad Name\""));
    let r = v.post("/admin/tenants", &[("name", "beta")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/tenants/beta"));
    app.admin.get_tenant("beta").await.unwrap();
}

#[tokio::test]
async fn pages_are_never_cached_framed_or_scripted_from_elsewhere() {
    let app = spawn_app().await;
    let r = reqwest::Client::new()
        .get(format!("{}/login", app.address))
        .send()
        .await
        .unwrap();
    let h = r.headers();
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-frame-options"], "DENY");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    for asset in ["portal.css", "portal.js"] {
        let r = reqwest::get(format!("{}/assets/{asset}", app.address))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(
            r.text().await.unwrap().contains("Apache-2.0"),
            "{asset} names its licence"
        );
    }
    assert_eq!(
        reqwest::get(format!("{}/assets/../Cargo.toml", app.address))
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn dag_files_are_uploaded_listed_and_deleted_from_the_dags_page() {
    let bucket = tempfile::tempdir().unwrap();
    let dir = bucket.path().to_owned();
    let app = spawn_app_with(move |s| s.bucket = Some(format!("file://{}", dir.display()))).await;
    with_env(&app, "acme", "etl").await;
    let token = app.token_with_role("acme", Role::Editor).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, &token).await;
    let page = v.get("/tenants/acme/environments/etl/dags").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.has_id("no-dags"));
    // Not running yet: the page says why there are no import errors to show.
    assert!(
        page.body.contains("no running Airflow API"),
        "{}",
        page.body
    );

    let path = "/tenants/acme/environments/etl/dags";
    let stored = bucket.path().join("tenants/acme/environments/etl/dags");
    // Without the CSRF token first, nothing is stored.
    let csrf = v.csrf.take();
    let r = v.upload(path, &[("a.py", "x = 1\n")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!stored.join("a.py").exists());
    v.csrf = csrf;

    let r = v
        .upload(path, &[("a.py", "x = 1\n"), ("b.py", "y = 2\n")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        std::fs::read_to_string(stored.join("a.py")).unwrap(),
        "x = 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(stored.join("b.py")).unwrap(),
        "y = 2\n"
    );
    let page = v.get(path).await;
    assert!(page.body.contains("data-file=\"a.py\""));
    assert!(page.body.contains("data-file=\"b.py\""));

    // A name that would leave the prefix is refused by name; the files before it are kept.
    let r = v
        .upload(path, &[("c.py", "z = 3\n"), ("../escape.py", "no\n")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let msg = r.text_of("upload-error").unwrap();
    assert!(msg.starts_with("../escape.py:"), "{msg}");
    assert!(stored.join("c.py").exists());
    assert!(!bucket
        .path()
        .join("tenants/acme/environments/etl/escape.py")
        .exists());

    let r = v.upload(path, &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    v.get(path).await;
    let r = v.post(&format!("{path}/delete"), &[("path", "a.py")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(!stored.join("a.py").exists());
    assert!(stored.join("b.py").exists());

    // A viewer lists but has no upload or delete controls, and cannot forge them.
    let viewer = app.token_with_role("acme", Role::Viewer).await.unwrap();
    let mut w = Visitor::signed_in(&app.address, &viewer).await;
    let page = w.get(path).await;
    assert!(page.body.contains("data-file=\"b.py\""));
    assert!(!page.has_id("upload-form"));
    assert!(!page.body.contains("/dags/delete"));
    let r = w.upload(path, &[("d.py", "1\n")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!stored.join("d.py").exists());
    let r = w.post(&format!("{path}/delete"), &[("path", "b.py")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(stored.join("b.py").exists());
}

#[tokio::test]
async fn the_logs_and_cli_forms_name_their_bad_fields() {
    let app = spawn_app().await;
    with_env(&app, "acme", "etl").await;
    let token = app.token_with_role("acme", Role::Editor).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, &token).await;
    let logs = "/tenants/acme/environments/etl/logs";
    let page = v.get(logs).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.has_id("log-lines") && page.has_id("follow"));
    let r = v.get(&format!("{logs}?level=loud")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body
            .contains("class=\"field invalid\"><label for=\"level\">"),
        "{}",
        r.body
    );
    let r = v.get(&format!("{logs}?dag=bad%20id&run=r&task=t")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("must be a DAG id"), "{}", r.body);

    let cli = "/tenants/acme/environments/etl/cli";
    let page = v.get(cli).await;
    assert!(page.has_id("cli-form"));
    let r = v.post(cli, &[("args", "db reset --yes")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.has_id("args-error"), "{}", r.body);
    let r = v.post(cli, &[("args", "dags list \"unclosed")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text_of("args-error").unwrap().contains("quotes"));

    // A viewer reads logs but gets no CLI form.
    let viewer = app.token_with_role("acme", Role::Viewer).await.unwrap();
    let mut w = Visitor::signed_in(&app.address, &viewer).await;
    assert_eq!(w.get(logs).await.status, StatusCode::OK);
    let page = w.get(cli).await;
    assert!(!page.has_id("cli-form"));
    assert_eq!(
        w.post(cli, &[("args", "dags list")]).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_platform_page_charts_each_pool_and_each_tenants_worker_hours() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("acme", Role::Editor).await.unwrap();
    let mut agent = app.registered_agent("local", 4).await.unwrap();
    let id = hangar_tests::create_env(&editor, "acme", "etl")
        .await
        .unwrap();
    agent.poll(std::time::Duration::from_secs(5)).await.unwrap();
    let mut observed = hangar_tests::healthy(1);
    observed.workers = Some(hangar_tenants::WorkerStatus {
        queued: 3,
        running: 2,
        desired: 2,
        actual: 2,
        draining: 1,
        ..Default::default()
    });
    agent.report(id, &observed).await.unwrap();

    // Two minutes sampled, as the control plane's sampler takes them once a minute.
    let db = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let now = chrono::Utc::now();
    for ago in [2, 1] {
        let at = now - chrono::Duration::minutes(ago);
        hangar_control_plane::persistence::usage::sample(&db, at, now - chrono::Duration::days(8))
            .await
            .unwrap();
    }
    // Sampling the same minute again (another replica) writes nothing.
    let again = hangar_control_plane::persistence::usage::sample(
        &db,
        now - chrono::Duration::minutes(1),
        now - chrono::Duration::days(8),
    )
    .await
    .unwrap();
    assert_eq!(again, 0);

    let mut v = Visitor::signed_in(&app.address, ADMIN_TOKEN).await;
    let page = v.get("/admin").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.has_id("utilization-chart"), "{}", page.body);
    assert!(
        page.body.contains("<polyline"),
        "a line for cell local: {}",
        page.body
    );
    // 3 workers held of the cell's slots for two minutes: 6 worker-minutes = 0.10 h.
    assert!(page.body.contains(">acme</text>"), "{}", page.body);
    assert!(page.body.contains("0.10 h"), "{}", page.body);
    // Only the platform admin sees it.
    let tenant = app.token_with_role("acme", Role::Admin).await.unwrap();
    let mut t = Visitor::signed_in(&app.address, &tenant).await;
    assert_eq!(t.get("/admin").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn live_updates_end_with_their_session() {
    let app = spawn_app().await;
    with_env(&app, "acme", "etl").await;
    let token = app.token_with_role("acme", Role::Viewer).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, &token).await;
    let cookie: String = v
        .cookies
        .iter()
        .map(|(k, val)| format!("{k}={val}"))
        .collect::<Vec<_>>()
        .join("; ");
    let open = |path: &str| {
        reqwest::Client::new()
            .get(format!("{}{path}", app.address))
            .header("cookie", cookie.clone())
            .send()
    };
    let mut list = open("/tenants/acme/events").await.unwrap();
    assert_eq!(list.status(), 200);
    assert!(list.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let logs = open("/tenants/acme/environments/etl/logs/events?component=scheduler")
        .await
        .unwrap();
    assert_eq!(logs.status(), 200);
    let mut seen = String::new();
    while !seen.contains("event: environments") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), list.chunk())
            .await
            .expect("the first update")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"name\":\"etl\""), "{seen}");

    assert_eq!(v.post("/logout", &[]).await.status, StatusCode::SEE_OTHER);
    // Both streams end by themselves once the session is gone.
    for (name, mut stream) in [("list", list), ("logs", logs)] {
        let drained = tokio::time::timeout(std::time::Duration::from_secs(15), async move {
            while let Ok(Some(_)) = stream.chunk().await {}
        })
        .await;
        assert!(drained.is_ok(), "the {name} stream outlived its session");
    }
}

#[tokio::test]
async fn the_list_is_paged_and_filtered_by_name() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("acme", Role::Editor).await.unwrap();
    for i in 0..105 {
        let name = if i % 10 == 0 {
            format!("sales-{i:03}")
        } else {
            format!("etl-{i:03}")
        };
        hangar_tests::create_env(&editor, "acme", &name)
            .await
            .unwrap();
    }
    let token = app.token_with_role("acme", Role::Viewer).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, &token).await;
    let first = v.get("/tenants/acme").await;
    assert_eq!(first.body.matches("data-env=").count(), 100);
    assert_eq!(first.text_of("showing").as_deref(), Some("1–100 of 105"));
    assert!(!first.has_id("previous-page"));
    assert!(
        first.body.contains("href=\"/tenants/acme?page=2\""),
        "{}",
        first.body
    );
    let second = v.get("/tenants/acme?page=2").await;
    assert_eq!(second.body.matches("data-env=").count(), 5);
    assert_eq!(second.text_of("showing").as_deref(), Some("101–105 of 105"));
    assert!(
        second.body.contains("href=\"/tenants/acme?\""),
        "{}",
        second.body
    );
    assert!(!second.has_id("next-page"));
    let sales = v.get("/tenants/acme?q=SALES").await;
    assert_eq!(sales.body.matches("data-env=\"sales-").count(), 11);
    assert_eq!(sales.body.matches("data-env=").count(), 11);
    assert!(
        sales.body.contains("/tenants/acme/events?q=SALES"),
        "the live updates keep the filter"
    );
    let none = v.get("/tenants/acme?q=zzz").await;
    assert!(none.text_of("no-environments").unwrap().contains("zzz"));
    // A bad page number is the first page, not an error.
    assert_eq!(v.get("/tenants/acme?page=x").await.status, StatusCode::OK);
}

#[tokio::test]
async fn editors_hibernate_and_wake_an_environment_from_its_page() {
    let (app, _editor, mut agent, id) = hangar_tests::running_etl().await.unwrap();
    let token = app.token_with_role("data", Role::Editor).await.unwrap();
    let mut v = Visitor::signed_in(&app.address, &token).await;
    let path = "/tenants/data/environments/etl";
    let page = v.get(path).await;
    assert!(page.has_id("hibernate"), "{}", page.body);
    assert!(!page.has_id("wake"));
    assert!(page.body.contains("Hibernates after 60 idle minutes"));

    let r = v.post(&format!("{path}/hibernate"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let e = app.admin.get_environment("data", "etl").await.unwrap();
    assert_eq!(e.phase, hangar_tenants::Phase::Hibernating);
    let a = agent.poll(std::time::Duration::from_secs(5)).await.unwrap();
    assert!(a.environments.iter().any(|a| a.id == id && a.hibernate));
    let page = v.get(path).await;
    assert!(
        page.has_id("wake") && !page.has_id("hibernate"),
        "{}",
        page.body
    );

    let r = v.post(&format!("{path}/wake"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let a = agent.poll(std::time::Duration::from_secs(5)).await.unwrap();
    assert!(a.environments.iter().any(|a| a.id == id && !a.hibernate));
    let audit = app.admin.audit("data").await.unwrap();
    for action in ["environment.hibernate", "environment.wake"] {
        assert!(audit.entries.iter().any(|e| e.action == action), "{action}");
    }
}
