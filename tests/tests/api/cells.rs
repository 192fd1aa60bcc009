//! Cells as tenants and operators see them: environments of a cell whose agent went silent,
//! and how each cell isolates its environments.

use std::time::{Duration, Instant};

use hangar_tenants::api::{CellIsolation, Role};
use hangar_tenants::Phase;
use hangar_tests::{create_env, healthy, spawn_app, spawn_app_with};

/// A status message with its figures as `N` (how long a silence lasted depends on the machine).
fn figures_as_n(message: Option<&str>) -> Option<String> {
    message.map(|m| {
        m.replace(|c: char| c.is_ascii_digit(), "N")
            .replace("NN", "N")
    })
}

#[tokio::test]
async fn environments_of_a_silent_cell_read_unavailable_until_its_agent_reports_again() {
    let app = spawn_app_with(|s| s.cell_ttl_secs = 2).await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let mut agent = app.registered_agent("local", 10).await.unwrap();
    let etl = create_env(&editor, "data", "etl").await.unwrap();
    create_env(&editor, "data", "old").await.unwrap();
    agent.poll(Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        agent.report(etl, &healthy(1)).await.unwrap().phase,
        Phase::Available
    );
    editor.delete_environment("data", "old").await.unwrap();
    let up = r#"hangar_environment_up{tenant="data",environment="etl",cell="local"}"#;
    assert!(app.metrics().await.contains(&format!("{up} 1")));

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let silent = "cell local has not reported for N s; its agent may be down";
    let e = editor.get_environment("data", "etl").await.unwrap();
    assert_eq!(
        (e.phase, figures_as_n(e.status_message.as_deref())),
        (Phase::Unavailable, Some(silent.to_owned()))
    );
    let listed = editor.list_environments("data").await.unwrap().environments;
    let phases: Vec<_> = listed
        .iter()
        .map(|e| {
            let m = figures_as_n(e.status_message.as_deref());
            (e.name.as_str(), e.phase, m)
        })
        .collect();
    assert_eq!(
        phases,
        [
            ("etl", Phase::Unavailable, Some(silent.to_owned())),
            (
                "old",
                Phase::Deleting,
                Some(
                    "waiting for cell local, which has not reported for N s; its agent may be down"
                        .to_owned()
                )
            ),
        ]
    );
    let text = app.metrics().await;
    for line in [
        format!("{up} 0"),
        r#"hangar_environments{phase="UNAVAILABLE"} 1"#.to_owned(),
        r#"hangar_environments{phase="DELETING"} 1"#.to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(!text.contains(r#"hangar_environments{phase="AVAILABLE"}"#));

    let e = agent.report(etl, &healthy(1)).await.unwrap();
    assert_eq!((e.phase, e.status_message), (Phase::Available, None));
    let e = editor.get_environment("data", "etl").await.unwrap();
    assert_eq!((e.phase, e.status_message), (Phase::Available, None));
    assert!(app.metrics().await.contains(&format!("{up} 1")));
}

/// An agent waiting in a long poll has nothing to report; the poll answers within half the
/// cell's TTL, so its next one comes before the cell counts as silent.
#[tokio::test]
async fn a_long_poll_answers_within_half_the_cell_ttl_so_a_waiting_cell_stays_live() {
    let app = spawn_app_with(|s| s.cell_ttl_secs = 2).await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let mut agent = app.registered_agent("local", 10).await.unwrap();
    let etl = create_env(&editor, "data", "etl").await.unwrap();
    agent.poll(Duration::from_secs(1)).await.unwrap();
    agent.report(etl, &healthy(1)).await.unwrap();
    for _ in 0..3 {
        let start = Instant::now();
        let a = agent.poll(Duration::from_secs(30)).await.unwrap();
        assert!(a.environments.is_empty());
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "answered after {:?}",
            start.elapsed()
        );
    }
    let e = editor.get_environment("data", "etl").await.unwrap();
    assert_eq!(e.phase, Phase::Available, "{:?}", e.status_message);
}

fn single_user() -> CellIsolation {
    CellIsolation {
        isolated: false,
        users: false,
        cgroups: Some("v2".into()),
        landlock: None,
        namespaces: false,
        problems: vec![
            "HANGAR_INSECURE_SINGLE_USER=true: every environment runs as the agent's user".into(),
            "the kernel has no Landlock".into(),
        ],
    }
}

#[tokio::test]
async fn a_cells_isolation_report_is_shown_on_the_cell_and_its_environments() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let agent = app
        .registered_agent_reporting("shared", 10, Some(single_user()))
        .await
        .unwrap();
    let cells = app.admin.list_cells().await.unwrap().cells;
    assert_eq!(cells[0].isolation, Some(single_user()));
    create_env(&editor, "data", "etl").await.unwrap();
    let e = editor.get_environment("data", "etl").await.unwrap();
    assert_eq!(
        (e.cell.as_deref(), e.isolated),
        (Some("shared"), Some(false))
    );

    // Each registration replaces the report: the agent now runs environments isolated.
    let isolated = CellIsolation {
        isolated: true,
        users: true,
        cgroups: Some("v2".into()),
        landlock: Some(4),
        namespaces: false,
        problems: vec![],
    };
    let cell = agent.register(10, Some(isolated.clone())).await.unwrap();
    assert_eq!(cell.isolation, Some(isolated));
    let listed = editor.list_environments("data").await.unwrap().environments;
    assert_eq!(listed[0].isolated, Some(true));
}

#[tokio::test]
async fn a_cell_that_reports_no_isolation_shows_none_and_its_environments_not_isolated() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    create_env(&editor, "data", "etl").await.unwrap();
    let waiting = editor.get_environment("data", "etl").await.unwrap();
    assert_eq!((waiting.cell, waiting.isolated), (None, None));

    app.registered_agent("local", 10).await.unwrap();
    let cells = app.admin.list_cells().await.unwrap().cells;
    assert_eq!(cells[0].isolation, None);
    let raw: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/cells", app.address))
        .bearer_auth(hangar_tests::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["cells"][0]["isolation"], serde_json::Value::Null);
    let e = editor.get_environment("data", "etl").await.unwrap();
    assert_eq!(
        (e.cell.as_deref(), e.isolated),
        (Some("local"), Some(false))
    );
}

#[tokio::test]
async fn an_isolation_report_is_refused_naming_the_field_that_is_wrong() {
    let app = spawn_app().await;
    let agent = app.registered_agent("local", 10).await.unwrap();
    for (isolation, field) in [
        (
            CellIsolation {
                cgroups: Some("v3".into()),
                ..single_user()
            },
            "isolation.cgroups",
        ),
        (
            CellIsolation {
                problems: vec!["x".repeat(501)],
                ..single_user()
            },
            "isolation.problems",
        ),
        (
            CellIsolation {
                problems: vec!["a problem".into(); 33],
                ..single_user()
            },
            "isolation.problems",
        ),
    ] {
        let err = agent.register(10, Some(isolation)).await.unwrap_err();
        assert_eq!(err.status(), Some(422), "{err}");
        let fields: Vec<_> = err
            .problem()
            .unwrap()
            .errors
            .iter()
            .map(|e| e.field.as_str())
            .collect();
        assert_eq!(fields, [field]);
    }
    let cells = app.admin.list_cells().await.unwrap().cells;
    assert_eq!(cells[0].isolation, None, "a refused report is not kept");
}

/// What an install does: the control plane makes sure of its cluster's cell with a token the
/// install generated and gave the agent too.
#[tokio::test]
async fn a_bootstrap_cell_exists_with_the_token_it_was_given_and_a_new_token_replaces_it() {
    use hangar_control_plane::settings::BootstrapCell;
    use hangar_tenants::api::{CellCapacity, RegisterCell, Runtime};
    use secrecy::SecretString;

    let first = format!("hgc_{}", "a".repeat(32));
    let second = format!("hgc_{}", "b".repeat(32));
    let with_token = |token: String, database: Option<String>| {
        move |s: &mut hangar_control_plane::settings::ServeSettings| {
            s.bootstrap_cell = Some(BootstrapCell::parse("cluster:kubernetes").unwrap());
            s.bootstrap_cell_token = Some(SecretString::from(token));
            if let Some(d) = database {
                s.database.database_url = SecretString::from(d);
            }
        }
    };
    let register = RegisterCell {
        capacity: CellCapacity {
            max_environments: 5,
            worker_slots: 4,
        },
        agent_version: "test".to_owned(),
        isolation: None,
        warm_pool: 0,
        agent_panics: 0,
    };

    let app = spawn_app_with(with_token(first.clone(), None)).await;
    let cells = app.admin.list_cells().await.unwrap().cells;
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].name, "cluster");
    assert_eq!(cells[0].runtime, Runtime::Kubernetes);
    app.admin
        .with_token(first.clone())
        .register_cell("cluster", &register)
        .await
        .unwrap();

    // Started again on the same database with the same token: nothing changes; with another
    // token: the old one stops working and the new one works.
    let again = spawn_app_with(with_token(first.clone(), Some(app.database_url.clone()))).await;
    assert_eq!(again.admin.list_cells().await.unwrap().cells.len(), 1);
    let rotated = spawn_app_with(with_token(second.clone(), Some(app.database_url.clone()))).await;
    let err = rotated
        .admin
        .with_token(first)
        .register_cell("cluster", &register)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    rotated
        .admin
        .with_token(second)
        .register_cell("cluster", &register)
        .await
        .unwrap();

    // Audited as the platform's doing.
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let actions: Vec<(String,)> = sqlx::query_as(
        "SELECT action FROM audit_log WHERE actor = 'platform:bootstrap' ORDER BY id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(
        actions.into_iter().map(|a| a.0).collect::<Vec<_>>(),
        ["cell.create", "cell.token.replace"]
    );
}
