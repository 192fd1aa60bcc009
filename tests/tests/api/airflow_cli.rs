//! `POST …/environments/{env}/cli`: the allow-list, roles, tenants, and the round trip through
//! the environment's cell agent (a fake agent on the real cell API; the real agent and Airflow
//! are in the e2e suite).

use std::time::Duration;

use hangar_client::{Client, ClientError};
use hangar_tenants::api::{AirflowCliResult, Problem, Role, RunAirflowCli};
use hangar_tests::{create_env, running_etl, spawn_app, FakeAgent, TestApp};

fn run(args: &[&str]) -> RunAirflowCli {
    RunAirflowCli {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        timeout_seconds: None,
    }
}

fn problem(r: Result<AirflowCliResult, ClientError>) -> Problem {
    match r {
        Err(ClientError::Api { problem }) => problem,
        other => panic!("expected a problem, got {other:?}"),
    }
}

async fn created(c: &Client) -> uuid::Uuid {
    create_env(c, "data", "etl").await.unwrap()
}

async fn running() -> (TestApp, Client, FakeAgent, uuid::Uuid) {
    running_etl().await.unwrap()
}

/// `args` with a time limit of `secs`.
fn run_for(args: &[&str], secs: u32) -> RunAirflowCli {
    RunAirflowCli {
        timeout_seconds: Some(secs),
        ..run(args)
    }
}

#[tokio::test]
async fn a_command_is_run_by_the_cells_agent_and_its_result_returned() {
    let (app, editor, agent, id) = running().await;

    let caller = tokio::spawn({
        let editor = editor.clone();
        async move {
            editor
                .run_airflow_cli("data", "etl", &run(&["dags", "list"]))
                .await
        }
    });
    // The agent's claim is a long poll: it answers as soon as the command is queued.
    let started = std::time::Instant::now();
    let mut calls = agent
        .client
        .claim_cli_calls("local", Duration::from_secs(20))
        .await
        .unwrap()
        .calls;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let call = calls.pop().expect("the queued command");
    assert_eq!(
        (call.environment_id, call.args.clone()),
        (id, vec!["dags".to_owned(), "list".to_owned()])
    );
    assert_eq!(call.timeout_seconds, 60);
    assert!(
        agent
            .client
            .claim_cli_calls("local", Duration::ZERO)
            .await
            .unwrap()
            .calls
            .is_empty(),
        "handed out once"
    );
    let answer = AirflowCliResult {
        stdout: "dag_id | fileloc\netl    | etl.py\n".into(),
        stderr: String::new(),
        exit_code: Some(0),
        timed_out: false,
        truncated: false,
        duration_ms: 1234,
    };
    agent
        .client
        .finish_cli_call("local", call.id, &answer)
        .await
        .unwrap();
    assert_eq!(caller.await.unwrap().unwrap(), answer);
    // Answered once: a second answer finds no running call.
    let again = agent
        .client
        .finish_cli_call("local", call.id, &answer)
        .await;
    assert!(matches!(again, Err(ClientError::Api { problem }) if problem.status == 404));

    let audit = app.admin.audit("data").await.unwrap().entries;
    assert!(
        audit
            .iter()
            .any(|e| e.action == "environment.cli" && e.details["args"][1] == "list"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn commands_off_the_list_are_refused_by_argument_and_nothing_is_queued() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let agent = app.registered_agent("local", 10).await.unwrap();
    created(&editor).await;
    // (arguments, the argument named first, what its message says)
    for (args, field, says) in [
        (vec!["db", "reset"], "args[0]", "\"db\""),
        (
            vec!["dags list; rm -rf /"],
            "args[0]",
            "not an allowed command",
        ),
        (
            vec!["dags", "list", ";", "rm", "-rf", "/"],
            "args[4]",
            "-rf",
        ),
        (
            vec!["dags", "test", "etl", "-f", "/etc/passwd"],
            "args[4]",
            "absolute path",
        ),
        (
            vec!["dags", "test", "etl", "--dagfile-path=/etc/passwd"],
            "args[3]",
            "absolute path",
        ),
        (
            vec!["dags", "test", "etl", "-f", "../../other/dags/x.py"],
            "args[4]",
            "`..`",
        ),
        // A prefix argparse would expand to `--env-vars`, one of an allowed option.
        (
            vec!["tasks", "test", "etl", "extract", "--env-v", "{}"],
            "args[4]",
            "option --env-v is not accepted by `tasks test`",
        ),
        (
            vec!["dags", "list", "--out", "json"],
            "args[2]",
            "option --out",
        ),
        // A glued short option argparse would read as `-S /etc`.
        (
            vec!["dags", "list", "-S/etc"],
            "args[2]",
            "option -S/etc is not accepted by `dags list`",
        ),
        (vec!["users", "list"], "args[0]", "\"users\""),
        (
            vec!["config", "get-value", "database", "sql_alchemy_conn"],
            "args[3]",
            "set by the platform",
        ),
    ] {
        let p = problem(editor.run_airflow_cli("data", "etl", &run(&args)).await);
        assert_eq!(
            (p.status, p.errors[0].field.as_str()),
            (422, field),
            "{args:?}: {p:?}"
        );
        assert!(p.errors[0].message.contains(says), "{args:?}: {p:?}");
    }
    let p = problem(
        editor
            .run_airflow_cli("data", "etl", &run_for(&["version"], 0))
            .await,
    );
    assert_eq!(p.errors[0].field, "timeout_seconds");
    assert!(agent
        .client
        .claim_cli_calls("local", Duration::ZERO)
        .await
        .unwrap()
        .calls
        .is_empty());
    let audit = app.admin.audit("data").await.unwrap().entries;
    assert!(
        audit
            .iter()
            .any(|e| e.action == "environment.cli" && e.details["refused"].is_string()),
        "refused commands are audited too"
    );
}

#[tokio::test]
async fn viewers_and_other_tenants_cannot_run_commands() {
    let app = spawn_app().await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let viewer = app.tenant_with_role("data", Role::Viewer).await.unwrap();
    let other = app.tenant_with_role("other", Role::Admin).await.unwrap();
    let agent = app.registered_agent("local", 10).await.unwrap();
    created(&editor).await;
    let p = problem(
        viewer
            .run_airflow_cli("data", "etl", &run(&["dags", "list"]))
            .await,
    );
    assert_eq!(p.status, 403);
    let p = problem(
        other
            .run_airflow_cli("data", "etl", &run(&["dags", "list"]))
            .await,
    );
    assert_eq!(p.status, 404);
    let p = problem(
        other
            .run_airflow_cli("other", "etl", &run(&["dags", "list"]))
            .await,
    );
    assert_eq!(p.status, 404);
    assert!(agent
        .client
        .claim_cli_calls("local", Duration::ZERO)
        .await
        .unwrap()
        .calls
        .is_empty());
}

#[tokio::test]
async fn a_command_waits_no_longer_than_its_time_limit_when_no_agent_answers() {
    let (_app, editor, _agent, _id) = running().await;
    let started = std::time::Instant::now();
    let p = problem(
        editor
            .run_airflow_cli("data", "etl", &run_for(&["version"], 1))
            .await,
    );
    assert_eq!(p.status, 503, "{p:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn calls_older_than_a_day_are_pruned_when_the_next_one_is_made() {
    use sqlx::Connection;
    let (app, editor, agent, _id) = running().await;
    let ask = |timeout| {
        let editor = editor.clone();
        tokio::spawn(async move {
            editor
                .run_airflow_cli("data", "etl", &run_for(&["version"], timeout))
                .await
        })
    };
    let _ = ask(1).await;
    let mut db = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    assert_eq!(count(&mut db).await, 1);
    sqlx::query("UPDATE cli_calls SET created_at = now() - interval '2 days'")
        .execute(&mut db)
        .await
        .unwrap();
    let next = ask(1);
    let mut calls = agent
        .client
        .claim_cli_calls("local", Duration::from_secs(10))
        .await
        .unwrap()
        .calls;
    assert_eq!(
        count(&mut db).await,
        1,
        "the old call went, the new one is there"
    );
    let call = calls.pop().unwrap();
    let answer = AirflowCliResult {
        stdout: "3.3.2\n".into(),
        stderr: String::new(),
        exit_code: Some(0),
        timed_out: false,
        truncated: false,
        duration_ms: 1,
    };
    agent
        .client
        .finish_cli_call("local", call.id, &answer)
        .await
        .unwrap();
    assert_eq!(next.await.unwrap().unwrap(), answer);
}

async fn count(db: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM cli_calls")
        .fetch_one(db)
        .await
        .unwrap()
}
