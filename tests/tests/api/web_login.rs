//! Browser sessions on an environment's Airflow UI: web login token → session cookie → proxy.
//! (That the UI itself loads through the proxy is in the end-to-end test, with a real Airflow.)

use hangar_tenants::api::{CreateEnvironment, Problem, Role, WebLoginToken};
use hangar_tests::{spawn_app, TestApp};
use reqwest::{header, Method, StatusCode};

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn env(app: &TestApp, tenant: &str, name: &str) {
    app.tenant_with_role(tenant, Role::Admin)
        .await
        .unwrap()
        .create_environment(
            tenant,
            &CreateEnvironment {
                name: name.into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
}

/// Follows a login URL like a browser; returns the session cookie (`name=value`) and the
/// whole Set-Cookie header.
async fn login(app: &TestApp, t: &WebLoginToken) -> (String, String) {
    let r = browser()
        .get(format!("{}{}", app.address, t.login_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[header::LOCATION].to_str().unwrap(),
        t.webserver_url
    );
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    (set.split(';').next().unwrap().to_owned(), set)
}

async fn ui(
    app: &TestApp,
    tenant: &str,
    env: &str,
    method: Method,
    cookie: &str,
) -> (u16, Problem) {
    let r = browser()
        .request(
            method,
            format!(
                "{}/v1/tenants/{tenant}/environments/{env}/airflow/api/v2/dags",
                app.address
            ),
        )
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        r.json().await.unwrap_or_else(|_| Problem {
            type_: String::new(),
            title: String::new(),
            status,
            detail: String::new(),
            errors: vec![],
        }),
    )
}

#[tokio::test]
async fn a_web_login_token_opens_a_session_on_that_environment_only() {
    let app = spawn_app().await;
    env(&app, "data", "etl").await;
    env(&app, "data", "ml").await;
    let viewer = app.tenant_with_role("data", Role::Viewer).await.unwrap();
    let t = viewer.web_login_token("data", "etl").await.unwrap();
    assert_eq!(
        t.webserver_url,
        "/v1/tenants/data/environments/etl/airflow/"
    );
    assert!(t.expires_at > chrono::Utc::now());
    let (cookie, set) = login(&app, &t).await;
    assert!(cookie.starts_with("hangar_web="), "{set}");
    for attr in [
        "Path=/v1/tenants/data/environments/etl/airflow/",
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=43200",
    ] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }

    // The cookie gets through Hangar's authorisation: the environment is not running, so the
    // answer is 503, not 401. A viewer's write goes on too: the environment's Airflow refuses
    // it by its own role check (the platform logs in there as a viewer; see the e2e test).
    let (status, p) = ui(&app, "data", "etl", Method::GET, &cookie).await;
    assert_eq!(status, 503, "{p:?}");
    assert!(p.detail.contains("no running Airflow API"), "{p:?}");
    assert_eq!(ui(&app, "data", "etl", Method::POST, &cookie).await.0, 503);

    // Not for another environment, not without the cookie, not tampered with.
    let (status, p) = ui(&app, "data", "ml", Method::GET, &cookie).await;
    assert_eq!(status, 401);
    assert_eq!(p.errors[0].field, "hangar_web");
    assert!(p.detail.contains("another environment"), "{p:?}");
    assert_eq!(ui(&app, "data", "etl", Method::GET, "other=1").await.0, 401);
    let mut tampered = cookie.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, p) = ui(&app, "data", "etl", Method::GET, &tampered).await;
    assert_eq!((status, p.errors[0].field.as_str()), (401, "hangar_web"));

    // The login token itself is no session, and is refused by name when bad.
    let (status, _) = ui(
        &app,
        "data",
        "etl",
        Method::GET,
        &format!("hangar_web={}", t.web_token),
    )
    .await;
    assert_eq!(status, 401);
    let bad = browser()
        .get(format!(
            "{}/v1/tenants/data/environments/ml/web-login?token={}",
            app.address, t.web_token
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let p: Problem = bad.json().await.unwrap();
    assert_eq!(p.errors[0].field, "token");
    let missing = browser()
        .get(format!(
            "{}/v1/tenants/data/environments/etl/web-login",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);

    // Revoking the token ends its sessions.
    let tokens = app.admin.list_tokens("data").await.unwrap();
    let id = tokens
        .tokens
        .iter()
        .find(|k| k.role == Role::Viewer)
        .unwrap()
        .id;
    app.admin.revoke_token("data", id).await.unwrap();
    let (status, p) = ui(&app, "data", "etl", Method::GET, &cookie).await;
    assert_eq!(status, 401);
    assert!(p.detail.contains("no longer valid"), "{p:?}");

    // Asking is audited; another tenant cannot ask.
    let audit = app.admin.audit("data").await.unwrap();
    assert!(audit
        .entries
        .iter()
        .any(|e| e.action == "environment.web_login" && e.target == "data/environments/etl"));
    let other = app.tenant_with_role("beta", Role::Admin).await.unwrap();
    let err = other.web_login_token("data", "etl").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let err = app.admin.web_login_token("data", "nope").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}
