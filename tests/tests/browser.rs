//! The portal in a real browser: headless Chromium over WebDriver against `hangar dev` with a
//! real Airflow. One journey, one environment (kept lean: creating an environment is the
//! expensive part): sign in with a one-time link, a refused create, a create (taking over the
//! environment `hangar dev` keeps prepared) watched to AVAILABLE without a reload, DAG files uploaded (one seen in Airflow through "Open Airflow",
//! a broken one's import error shown with its line),
//! the CLI page, the scheduler log followed live, a forged CSRF token and an expired session
//! refused, a viewer without controls, signing out. With `HANGAR_PORTAL_SCREENSHOTS=<dir>` it
//! saves the screenshots docs/portal.md shows (`scripts/portal-screenshots`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use hangar_tenants::api::{CreateTenant, CreateToken, Role};
use hangar_tests::browser::Browser;
use hangar_tests::{airflow_api, hangar_bin};
use reqwest::Method;
use serde_json::json;

const CGROUP_PARENT: &str = "hangar-browser-dev";

const DAG: &str = r#"from datetime import datetime
from airflow.sdk import dag, task

@dag(dag_id="portal_probe", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def portal_probe():
    @task
    def hello():
        print("hello from the portal")

    hello()

portal_probe()
"#;

/// `hangar portal-login` as a user runs it: the one-time link it prints.
async fn portal_link(url: &str, token: &str) -> String {
    let out = tokio::process::Command::new(hangar_bin())
        .args(["portal-login", "--tenant", "acme"])
        .env("HANGAR_URL", url)
        .env("HANGAR_TOKEN", token)
        .output()
        .await
        .unwrap();
    hangar_tests::succeeded(&out).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_runs_airflow_from_the_portal_in_a_browser() {
    let dir =
        std::env::temp_dir().join(format!("hangar-browser-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let dev = hangar_tests::dev::start(&dir, CGROUP_PARENT).await;
    let result = journey(&dev, &dir).await;
    let status = hangar_tests::dev::interrupt(dev.child);
    hangar_tests::remove_environment_users_and_cgroups(&dir, CGROUP_PARENT);
    if let Err(e) = result {
        panic!(
            "{e:#}\n(hangar dev's log: {})",
            dir.with_extension("log").display()
        );
    }
    assert!(status.success(), "hangar dev exited with {status}");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn journey(dev: &hangar_tests::dev::Dev, dir: &std::path::Path) -> anyhow::Result<()> {
    let admin = &dev.admin;
    admin
        .create_tenant(&CreateTenant {
            name: "acme".into(),
            display_name: Some("Acme data team".into()),
        })
        .await?;
    let token = |role: Role| async move {
        admin
            .create_token(
                "acme",
                &CreateToken {
                    name: format!("{}-browser", role.as_str()),
                    role,
                },
            )
            .await
            .map(|t| t.token)
    };
    let editor = token(Role::Editor).await?;
    let viewer = token(Role::Viewer).await?;
    let b = Browser::start(&dev.url, 1280).await?;

    // Sign in with the link `hangar portal-login` prints.
    let link = portal_link(&dev.url, &editor).await;
    anyhow::ensure!(link.contains("/login/link?token="), "{link}");
    b.goto(&link).await?;
    b.wait_path(Duration::from_secs(10), |p| p == "/tenants/acme")
        .await?;
    b.screenshot("environments-empty").await?;

    // A bad name: the error next to the field, what was typed kept.
    b.click("#create-environment").await?;
    b.fill("#name", "Bad_Name").await?;
    b.click("#create").await?;
    let err = b
        .wait_text("#name-error", Duration::from_secs(10), |t| !t.is_empty())
        .await?;
    anyhow::ensure!(err.contains("lower-case letters"), "{err}");
    let kept = b.find("#name").await?.prop("value").await?;
    anyhow::ensure!(kept.as_deref() == Some("Bad_Name"), "{kept:?}");
    b.screenshot("create-form-error").await?;

    // `hangar dev` keeps an environment prepared: once it is up, the create below takes it over
    // (its Airflow then serves under a path named by its id, which the UI below runs under).
    let start = Instant::now();
    while !admin
        .list_cells()
        .await?
        .cells
        .iter()
        .any(|c| c.warm_ready > 0)
    {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(300),
            "no prepared environment"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Created, and watched to AVAILABLE on its page without a reload.
    b.fill("#name", "etl").await?;
    b.fill("#max_workers", "2").await?;
    b.click("#create").await?;
    b.wait_path(Duration::from_secs(10), |p| {
        p == "/tenants/acme/environments/etl"
    })
    .await?;
    b.js("window.__hangar_same_page = true").await?;
    // (A prepared environment is up about a second after the create: the page may already
    // have it AVAILABLE.)
    let first = b.find("#phase").await?.text().await?;
    anyhow::ensure!(first == "CREATING" || first == "AVAILABLE", "{first}");
    b.wait_text("#phase", Duration::from_secs(300), |t| t == "AVAILABLE")
        .await?;
    let same = b.js("return window.__hangar_same_page === true").await?;
    anyhow::ensure!(same == json!(true), "the page reloaded");
    b.screenshot("environment").await?;

    // The list shows it live too.
    b.goto("/tenants/acme").await?;
    b.wait_text(
        "tr[data-env=\"etl\"] [data-field=\"phase\"]",
        Duration::from_secs(5),
        |t| t == "AVAILABLE",
    )
    .await?;
    b.screenshot("environments").await?;

    // Two DAG files uploaded at once from the file picker, listed.
    let file = dir.join("portal_probe.py");
    std::fs::write(&file, DAG)?;
    let broken = dir.join("broken.py");
    std::fs::write(&broken, "from airflow.sdk import dag\n\ndef (:\n")?;
    b.goto("/tenants/acme/environments/etl/dags").await?;
    b.find("#files")
        .await?
        .send_keys(&format!("{}\n{}", file.display(), broken.display()))
        .await?;
    b.click("#upload").await?;
    let start = Instant::now();
    while !(b.exists("tr[data-file=\"portal_probe.py\"]").await
        && b.exists("tr[data-file=\"broken.py\"]").await)
    {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(20),
            "uploads not listed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // "Open Airflow": the Airflow UI, signed in, lists the uploaded DAG.
    b.goto("/tenants/acme/environments/etl").await?;
    b.click("#open-airflow").await?;
    let ui = admin
        .get_environment("acme", "etl")
        .await?
        .webserver_url
        .unwrap_or_default();
    anyhow::ensure!(
        ui.starts_with("/v1/environments/"),
        "not the prepared one: {ui}"
    );
    b.wait_path(Duration::from_secs(20), |p| p.starts_with(ui.as_str()))
        .await?;
    let dags_page = format!("{}{ui}dags", dev.url.trim_end_matches('/'));
    let start = Instant::now();
    loop {
        b.goto(&dags_page).await?;
        let seen = b
            .wait_text("body", Duration::from_secs(10), |t| {
                t.contains("portal_probe")
            })
            .await;
        if seen.is_ok() {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "portal_probe not listed in the Airflow UI: {}",
            b.find("body").await?.text().await?
        );
    }
    b.screenshot("airflow").await?;

    // The broken file's import error, with its file and line, on the DAG page.
    let start = Instant::now();
    loop {
        b.goto("/tenants/acme/environments/etl/dags").await?;
        if let Ok(e) = b.find("#import-errors").await {
            let text = e.text().await?;
            anyhow::ensure!(text.contains("broken.py, line 3"), "{text}");
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "no import error shown for broken.py"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    b.screenshot("dags").await?;

    // The CLI page runs `dags list`, shown as a terminal would.
    b.goto("/tenants/acme/environments/etl/cli").await?;
    b.fill("#args", "dags list").await?;
    b.click("#run").await?;
    b.wait_text("#cli-output", Duration::from_secs(120), |t| {
        t.contains("portal_probe")
    })
    .await?;
    b.screenshot("cli").await?;

    // The scheduler's log, followed live: a triggered run makes it write.
    b.goto("/tenants/acme/environments/etl/logs?component=scheduler")
        .await?;
    let before = b
        .client
        .find_all(fantoccini::Locator::Css("#log-lines .line"))
        .await?
        .len();
    b.click("#follow").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    airflow_api(
        admin,
        "acme",
        "etl",
        Method::PATCH,
        "dags/portal_probe",
        Some(json!({"is_paused": false})),
    )
    .await;
    let (s, r) = airflow_api(
        admin,
        "acme",
        "etl",
        Method::POST,
        "dags/portal_probe/dagRuns",
        Some(json!({"logical_date": null})),
    )
    .await;
    anyhow::ensure!(s == 200, "trigger: {s} {r}");
    let start = Instant::now();
    loop {
        let now = b
            .client
            .find_all(fantoccini::Locator::Css("#log-lines .line"))
            .await?
            .len();
        if now > before {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "no scheduler line arrived live ({before} before)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    b.screenshot("logs").await?;

    // A form with a forged CSRF token is refused and changes nothing.
    b.goto("/tenants/acme/environments/etl").await?;
    let revision = admin.get_environment("acme", "etl").await?.revision;
    b.js("document.querySelector('#update-form input[name=csrf_token]').value = 'forged'")
        .await?;
    b.fill("#max_workers", "3").await?;
    b.click("#update").await?;
    let detail = b
        .wait_text("#error-detail", Duration::from_secs(10), |t| !t.is_empty())
        .await?;
    anyhow::ensure!(detail.contains("CSRF"), "{detail}");
    anyhow::ensure!(admin.get_environment("acme", "etl").await?.revision == revision);

    // An expired session: the next page is the sign-in form.
    let db = sqlx::PgPool::connect(&hangar_tests::dev::database_url(dir).unwrap()).await?;
    sqlx::query("UPDATE portal_sessions SET expires_at = now() - interval '1 second'")
        .execute(&db)
        .await?;
    b.goto("/tenants/acme").await?;
    b.wait_path(Duration::from_secs(10), |p| p.starts_with("/login"))
        .await?;

    // A viewer, signed in with the form: no create button, no update form.
    b.fill("#token", &viewer).await?;
    b.click("#login-form button[type=submit]").await?;
    b.wait_path(Duration::from_secs(10), |p| p == "/tenants/acme")
        .await?;
    anyhow::ensure!(
        !b.exists("#create-environment").await,
        "a viewer sees Create"
    );
    b.screenshot("viewer").await?;
    b.goto("/tenants/acme/environments/etl").await?;
    anyhow::ensure!(
        !b.exists("#update-form").await,
        "a viewer sees the update form"
    );

    // Signing out ends the session.
    b.click("#sign-out").await?;
    b.wait_path(Duration::from_secs(10), |p| p == "/login")
        .await?;
    b.goto("/tenants/acme").await?;
    b.wait_path(Duration::from_secs(10), |p| p.starts_with("/login"))
        .await?;
    b.close().await?;

    // The platform admin's page: tenants, the cell and its pool, the charts.
    let platform = Browser::start(&dev.url, 1280).await?;
    platform
        .goto(&portal_link(&dev.url, &dev.admin_token).await)
        .await?;
    platform
        .wait_path(Duration::from_secs(10), |p| p == "/tenants/acme")
        .await?;
    platform.goto("/admin").await?;
    let cells = platform.find("#cells").await?.text().await?;
    anyhow::ensure!(cells.contains("local"), "{cells}");
    anyhow::ensure!(platform.exists("#utilization-chart").await);
    anyhow::ensure!(platform.exists("#worker-hours-chart").await);
    platform.screenshot("admin").await?;
    platform.close().await?;

    // At phone width the pages fit the screen.
    let phone = Browser::start(&dev.url, 390).await?;
    phone.goto(&portal_link(&dev.url, &editor).await).await?;
    phone
        .wait_path(Duration::from_secs(10), |p| p == "/tenants/acme")
        .await?;
    phone.goto("/tenants/acme/environments/etl").await?;
    let overflow = phone
        .js("return document.documentElement.scrollWidth > window.innerWidth + 1")
        .await?;
    anyhow::ensure!(
        overflow == json!(false),
        "the environment page is wider than a phone"
    );
    phone.screenshot("phone").await?;
    phone.close().await?;
    Ok(())
}
