//! Browser sessions on an environment's Airflow UI: web login token → session cookie → proxy,
//! on the control plane's origin and on each environment's own UI host (`HANGAR_UI_DOMAIN`).
//! (That the UI itself loads through the proxy is in the end-to-end test, with a real Airflow.)

use std::time::Duration;

use hangar_control_plane::ui_domain::UiDomain;
use hangar_tenants::api::{CreateEnvironment, Problem, Role, WebLoginToken};
use hangar_tests::fake_airflow::{token_for, FakeAirflow};
use hangar_tests::{create_env, problem_of, running_etl_with, spawn_app, TestApp};
use reqwest::{header, Method, StatusCode};
use serde_json::Value;

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
    // answer is 409 (its state), not 401. A viewer's write goes on too: the environment's Airflow refuses
    // it by its own role check (the platform logs in there as a viewer; see the e2e test).
    let (status, p) = ui(&app, "data", "etl", Method::GET, &cookie).await;
    assert_eq!(status, 409, "{p:?}");
    assert!(p.detail.contains("no running Airflow API"), "{p:?}");
    assert_eq!(ui(&app, "data", "etl", Method::POST, &cookie).await.0, 409);

    // The login URL works once, on whichever control-plane replica it reaches.
    let other = app.replica(|_| {}).await;
    for replica in [&app, &other] {
        let again = browser()
            .get(format!("{}{}", replica.address, t.login_url))
            .send()
            .await
            .unwrap();
        let (status, p) = hangar_tests::problem_of(again).await;
        assert_eq!((status, p.errors[0].field.as_str()), (401, "token"));
        assert!(p.detail.contains("used already"), "{p:?}");
    }

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

/// Tenant `data` with environments `etl` and `ml` running (each a `FakeAirflow`), on a control
/// plane with `HANGAR_UI_DOMAIN=ui.test`; and the two UI hosts, with the control plane's port.
async fn on_own_hosts() -> (TestApp, [FakeAirflow; 2], String, String) {
    let (app, editor, mut agent, etl) =
        running_etl_with(|s| s.ui_domain = Some(UiDomain::parse("ui.test").unwrap()))
            .await
            .unwrap();
    let ml = create_env(&editor, "data", "ml").await.unwrap();
    agent.poll(Duration::from_secs(5)).await.unwrap();
    let fakes = [
        FakeAirflow::start("data", "etl", axum::Router::new())
            .await
            .unwrap(),
        FakeAirflow::start("data", "ml", axum::Router::new())
            .await
            .unwrap(),
    ];
    for (id, fake) in [etl, ml].into_iter().zip(&fakes) {
        agent.serve_airflow(id, &fake.url).await.unwrap();
    }
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let hosts = (
        format!("etl--data.ui.test:{port}"),
        format!("ml--data.ui.test:{port}"),
    );
    (app, fakes, hosts.0, hosts.1)
}

/// A browser's request for `path` on `host` (sent to the control plane's address).
fn on(app: &TestApp, host: &str, path: &str) -> reqwest::RequestBuilder {
    browser()
        .get(format!("{}{path}", app.address))
        .header(header::HOST, host)
}

/// The path of a login URL on `host`.
fn login_path<'a>(t: &'a WebLoginToken, host: &str) -> &'a str {
    t.login_url
        .strip_prefix(&format!("http://{host}"))
        .unwrap_or_else(|| panic!("{} is not on {host}", t.login_url))
}

#[tokio::test]
async fn each_environments_ui_is_served_on_its_own_host() {
    let (app, _fakes, etl_host, ml_host) = on_own_hosts().await;
    let viewer = app.tenant_with_role("data", Role::Viewer).await.unwrap();

    // The environment's UI is an origin of its own, and so is its login URL.
    let e = viewer.get_environment("data", "etl").await.unwrap();
    assert_eq!(e.webserver_url, Some(format!("http://{etl_host}/")));
    let t = viewer.web_login_token("data", "etl").await.unwrap();
    assert_eq!(t.webserver_url, format!("http://{etl_host}/"));
    let path = login_path(&t, &etl_host);
    assert!(
        path.starts_with("/v1/tenants/data/environments/etl/web-login?token="),
        "{path}"
    );

    // Logging in there sets a cookie for that host alone: no Domain, so a browser sends it to
    // no other environment's host; not Secure over plain http.
    let r = on(&app, &etl_host, path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/");
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.starts_with("hangar_web="), "{set}");
    for attr in ["; Path=/;", "HttpOnly", "SameSite=Lax", "Max-Age=43200"] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    assert!(!set.to_ascii_lowercase().contains("domain"), "{set}");
    assert!(!set.contains("Secure"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();

    // Once only.
    let (status, p) = problem_of(on(&app, &etl_host, path).send().await.unwrap()).await;
    assert_eq!((status, p.errors[0].field.as_str()), (401, "token"));
    assert!(p.detail.contains("used already"), "{p:?}");

    // On its host, every path is the environment's Airflow (its own prefix, which the UI's
    // links carry, too), with the viewer's Airflow user; nothing of Hangar's API is there.
    let etl = "/v1/tenants/data/environments/etl/airflow";
    for (asked, reached) in [
        ("/api/v2/dags?limit=1", format!("{etl}/api/v2/dags")),
        (
            "/v1/tenants/data/environments/etl/airflow/api/v2/dags?limit=1",
            format!("{etl}/api/v2/dags"),
        ),
        ("/", format!("{etl}/")),
        ("/healthz", format!("{etl}/healthz")),
        (
            "/v1/tenants/data/environments",
            format!("{etl}/v1/tenants/data/environments"),
        ),
    ] {
        let r = on(&app, &etl_host, asked)
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asked}");
        let seen: Value = r.json().await.unwrap();
        assert_eq!(seen["path"], reached.as_str(), "{asked}");
        assert_eq!(
            seen["authorization"],
            format!("Bearer {}", token_for("hangar-viewer"))
        );
    }

    // Its cookie is no good on another environment's host, nor on the control plane's origin.
    let (status, p) = problem_of(
        on(&app, &ml_host, "/api/v2/dags")
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, p.errors[0].field.as_str()), (401, "hangar_web"));
    assert!(p.detail.contains("another environment"), "{p:?}");
    let (status, p) = problem_of(
        browser()
            .get(format!("{}{etl}/api/v2/dags", app.address))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, p.errors[0].field.as_str()), (401, "hangar_web"));
    assert!(p.detail.contains("another origin"), "{p:?}");

    // A bearer token works on the host as on the API; without either, 401.
    let admin = app.token_with_role("data", Role::Admin).await.unwrap();
    let r = on(&app, &ml_host, "/api/v2/dags")
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let seen: Value = r.json().await.unwrap();
    assert_eq!(
        seen["path"],
        "/v1/tenants/data/environments/ml/airflow/api/v2/dags"
    );
    assert_eq!(
        seen["authorization"],
        format!("Bearer {}", token_for("hangar-admin"))
    );
    let (status, _) = problem_of(on(&app, &ml_host, "/").send().await.unwrap()).await;
    assert_eq!(status, 401);

    // Behind a TLS proxy (it says so), the cookie is Secure.
    let t = viewer.web_login_token("data", "etl").await.unwrap();
    let r = on(&app, &etl_host, login_path(&t, &etl_host))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(set.ends_with("; Secure"), "{set}");

    // The control plane's own login path sends the browser on to the environment's host with
    // the token unspent; a host does not log in for another environment.
    let t = viewer.web_login_token("data", "etl").await.unwrap();
    let r = browser()
        .get(format!(
            "{}/v1/tenants/data/environments/etl/web-login?token={}",
            app.address, t.web_token
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], t.login_url.as_str());
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    let ml = viewer.web_login_token("data", "ml").await.unwrap();
    let (status, _) = problem_of(
        on(&app, &etl_host, login_path(&ml, &ml_host))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    let r = on(&app, &etl_host, login_path(&t, &etl_host))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}
