//! Environment logs through the API: component lines shipped by the real data-plane shipper
//! (`log_ship`) from files on disk to a real local bucket and to the live tail, read back with
//! filters, followed live, and task logs; roles and tenants. The real agent and Airflow are in
//! the e2e suite.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use hangar_client::{Client, ClientError};
use hangar_data_plane::bucket::Bucket;
use hangar_data_plane::log_ship::{LogSource, ShipSettings, Shipper};
use hangar_tenants::api::{LogLevel, Role, RunAirflowCli};
use hangar_tests::{create_env, healthy, spawn_app_with, FakeAgent, TestApp};
use uuid::Uuid;

struct Setup {
    _app: TestApp,
    editor: Client,
    viewer: Client,
    agent: FakeAgent,
    id: Uuid,
    bucket_dir: PathBuf,
    home: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.bucket_dir);
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Tenant `data` with an editor and a viewer, its environment `etl` running on cell `local`
/// (a fake agent), a local bucket, and an empty home for the environment's log files.
async fn setup() -> Setup {
    let bucket_dir = std::env::temp_dir().join(format!("hangar-logs-{}", Uuid::new_v4().simple()));
    let dir = bucket_dir.clone();
    let app = spawn_app_with(move |s| s.bucket = Some(format!("file://{}", dir.display()))).await;
    let editor = app.tenant_with_role("data", Role::Editor).await.unwrap();
    let viewer = app.tenant_with_role("data", Role::Viewer).await.unwrap();
    let mut agent = app.registered_agent("local", 10).await.unwrap();
    let id = create_env(&editor, "data", "etl").await.unwrap();
    agent.poll(Duration::from_secs(5)).await.unwrap();
    agent.report(id, &healthy(1)).await.unwrap();
    let home = std::env::temp_dir().join(format!("hangar-home-{}", id.simple()));
    std::fs::create_dir_all(home.join("components")).unwrap();
    Setup {
        _app: app,
        editor,
        viewer,
        agent,
        id,
        bucket_dir,
        home,
    }
}

impl Setup {
    fn sources(&self) -> HashMap<Uuid, LogSource> {
        HashMap::from([(
            self.id,
            LogSource {
                tenant: "data".into(),
                name: "etl".into(),
                home: self.home.clone(),
            },
        )])
    }

    fn shipper(&self) -> Shipper {
        let bucket = Bucket::local(self.bucket_dir.clone()).unwrap();
        Shipper::new(Some(bucket), ShipSettings::default())
    }

    fn append(&self, component: &str, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(
                self.home
                    .join("components")
                    .join(format!("{component}.log")),
            )
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// One pass of the shipper: reads the files and sends the lines live, as the agent does.
    async fn send(&self, shipper: &mut Shipper) {
        let batch = shipper.read(&self.sources(), Utc::now());
        self.agent
            .client
            .post_log_lines("local", &batch)
            .await
            .unwrap();
        shipper.sent(&batch);
    }
}

fn now_line(level: &str, text: &str) -> String {
    format!(
        "{} [{level:<9}] {text}\n",
        Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ")
    )
}

fn q(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn messages(lines: &[hangar_tenants::api::LogLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l.component,
                l.message.rsplit("] ").next().unwrap_or("")
            )
        })
        .collect()
}

fn status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api { problem }) => (
            problem.status,
            problem
                .errors
                .first()
                .map(|e| e.field.clone())
                .unwrap_or_default(),
        ),
        other => panic!("expected a problem, got {other:?}"),
    }
}

#[tokio::test]
async fn component_logs_come_from_the_bucket_and_the_live_tail_each_line_once() {
    let s = setup().await;
    // Lines only in the bucket: read and shipped, never sent live.
    s.append("scheduler", &now_line("info", "scheduler started"));
    s.append(
        "worker-0",
        &(now_line("error", "task failed")
            + "Traceback (most recent call last):\nValueError: boom\n"),
    );
    let mut first = s.shipper();
    first.read(&s.sources(), Utc::now());
    first.flush(&s.sources(), true).await;
    drop(first);
    // Lines only in the live tail, and one in both (a new shipper starts from the bucket's
    // offsets, so it sends again what the first one had read but not shipped: nothing here).
    let mut second = s.shipper();
    s.append("scheduler", &now_line("warning", "heartbeat slow"));
    s.append(
        "api-server",
        "INFO:     127.0.0.1:1 - \"GET /api/v2/monitor/health HTTP/1.1\" 200 OK\n",
    );
    s.send(&mut second).await;
    // The same lines sent twice are kept once.
    second.flush(&s.sources(), true).await;
    let mut third = s.shipper();
    s.append("scheduler", &now_line("info", "parsed 3 DAGs"));
    s.send(&mut third).await;

    let all = s.viewer.logs("data", "etl", &[]).await.unwrap();
    assert!(!all.truncated);
    let got = messages(&all.lines);
    assert_eq!(got.len(), 7, "{got:#?}");
    for want in [
        "scheduler scheduler started",
        "worker-0 task failed",
        "worker-0 ValueError: boom",
        "scheduler heartbeat slow",
        "scheduler parsed 3 DAGs",
    ] {
        assert!(got.contains(&want.to_owned()), "{want} in {got:#?}");
    }
    assert!(
        all.lines.windows(2).all(|w| w[0].ts <= w[1].ts),
        "oldest first"
    );

    // Filters: a component family, a least level (a traceback's frames keep their line's),
    // text in any case, a limit that keeps the newest.
    let workers = s
        .viewer
        .logs("data", "etl", &q(&[("component", "worker")]))
        .await
        .unwrap();
    assert_eq!(workers.lines.len(), 3);
    let errors = s
        .viewer
        .logs("data", "etl", &q(&[("level", "error")]))
        .await
        .unwrap();
    assert_eq!(errors.lines.len(), 3);
    assert!(errors.lines.iter().all(|l| l.level == LogLevel::Error));
    let warnings = s
        .viewer
        .logs(
            "data",
            "etl",
            &q(&[("level", "warning"), ("component", "scheduler")]),
        )
        .await
        .unwrap();
    assert_eq!(messages(&warnings.lines), ["scheduler heartbeat slow"]);
    let boom = s
        .viewer
        .logs("data", "etl", &q(&[("q", "BOOM")]))
        .await
        .unwrap();
    assert_eq!(messages(&boom.lines), ["worker-0 ValueError: boom"]);
    let last = s
        .viewer
        .logs("data", "etl", &q(&[("limit", "1")]))
        .await
        .unwrap();
    assert!(last.truncated);
    assert_eq!(last.lines.len(), 1);
    // A window in the past has none of them.
    let old = s
        .viewer
        .logs("data", "etl", &q(&[("since", "3h"), ("until", "2h")]))
        .await
        .unwrap();
    assert!(old.lines.is_empty());
}

#[tokio::test]
async fn bad_log_parameters_are_refused_naming_the_parameter() {
    let s = setup().await;
    for (pairs, field) in [
        (q(&[("level", "loud")]), "level"),
        (q(&[("since", "yesterday")]), "since"),
        (q(&[("until", "2026-13-01")]), "until"),
        (q(&[("component", "../scheduler")]), "component"),
        (q(&[("limit", "100000")]), "limit"),
        (q(&[("follow", "maybe")]), "follow"),
    ] {
        assert_eq!(
            status(s.viewer.logs("data", "etl", &pairs).await),
            (422, field.to_owned()),
            "{pairs:?}"
        );
    }
    // A parameter it does not know is refused too.
    assert_eq!(
        status(s.viewer.logs("data", "etl", &q(&[("grep", "x")])).await).0,
        400
    );
    assert_eq!(
        status(
            s.viewer
                .follow_logs("data", "etl", &q(&[("until", "1h")]))
                .await
        )
        .1,
        "until"
    );
}

#[tokio::test]
async fn a_follower_gets_the_last_lines_then_each_new_one() {
    let s = setup().await;
    let mut shipper = s.shipper();
    s.append("scheduler", &now_line("info", "before"));
    s.send(&mut shipper).await;

    let mut follower = s
        .viewer
        .follow_logs("data", "etl", &q(&[("component", "scheduler")]))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), follower.next())
        .await
        .expect("the backlog line")
        .unwrap()
        .unwrap();
    assert!(first.message.ends_with("before"));

    // A worker line is filtered out; the next scheduler line arrives.
    s.append("worker-0", &now_line("info", "not for this follower"));
    s.append("scheduler", &now_line("info", "after"));
    s.send(&mut shipper).await;
    let second = tokio::time::timeout(Duration::from_secs(10), follower.next())
        .await
        .expect("the new line")
        .unwrap()
        .unwrap();
    assert_eq!(second.component, "scheduler");
    assert!(second.message.ends_with("after"));
}

#[tokio::test]
async fn task_logs_are_read_from_the_bucket_latest_try_by_default() {
    let s = setup().await;
    let run = "manual__2026-11-25T10:00:00+00:00";
    let dir = s
        .home
        .join("logs")
        .join("dag_id=etl")
        .join(format!("run_id={run}"))
        .join("task_id=load");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("attempt=1.log"),
        r#"{"timestamp":"2026-11-25T10:00:01Z","level":"error","event":"Task failed with exception","error_detail":[{"exc_type":"ValueError","exc_value":"boom","frames":[{"filename":"/dags/etl.py","lineno":9,"name":"load"}]}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("attempt=2.log"), "{\"timestamp\":\"2026-11-25T10:05:00Z\",\"level\":\"info\",\"event\":\"Task succeeded\"}\n").unwrap();
    let mut shipper = s.shipper();
    shipper.read(&s.sources(), Utc::now());
    shipper.ship_task_logs(&s.sources(), true).await;
    // The files are gone from the machine (the worker's machine went away): the bucket has them.
    std::fs::remove_dir_all(s.home.join("logs")).unwrap();

    let latest = s
        .viewer
        .task_log("data", "etl", "etl", run, "load", None)
        .await
        .unwrap();
    assert_eq!(latest, "[2026-11-25T10:05:00Z] INFO - Task succeeded\n");
    let failed = s
        .viewer
        .task_log("data", "etl", "etl", run, "load", Some(1))
        .await
        .unwrap();
    assert!(
        failed.contains("Traceback (most recent call last):"),
        "{failed}"
    );
    assert!(
        failed.contains("File \"/dags/etl.py\", line 9, in load"),
        "{failed}"
    );
    assert!(failed.contains("ValueError: boom"), "{failed}");
    assert_eq!(
        status(
            s.viewer
                .task_log("data", "etl", "etl", run, "load", Some(3))
                .await
        )
        .0,
        404
    );
    assert_eq!(
        status(
            s.viewer
                .task_log("data", "etl", "etl", run, "other", None)
                .await
        )
        .0,
        404
    );
    assert_eq!(
        status(
            s.viewer
                .task_log("data", "etl", "etl$", run, "load", None)
                .await
        ),
        (422, "dag".to_owned())
    );
    // A `/` makes it a DAG file path, which may not leave the environment's folder either.
    assert_eq!(
        status(
            s.viewer
                .task_log("data", "etl", "../etl", run, "load", None)
                .await
        )
        .0,
        422
    );
}

#[tokio::test]
async fn other_tenants_see_nothing_and_viewers_read_logs_but_run_no_cli() {
    let s = setup().await;
    let mut shipper = s.shipper();
    s.append("scheduler", &now_line("info", "alpha's secret"));
    s.send(&mut shipper).await;
    let app = &s._app;
    let other = app.tenant_with_role("beta", Role::Admin).await.unwrap();
    assert_eq!(status(other.logs("data", "etl", &[]).await).0, 404);
    assert_eq!(status(other.follow_logs("data", "etl", &[]).await).0, 404);
    assert_eq!(
        status(other.task_log("data", "etl", "etl", "r", "t", None).await).0,
        404
    );
    let cli = RunAirflowCli {
        args: vec!["dags".into(), "list".into()],
        timeout_seconds: None,
    };
    assert_eq!(
        status(other.run_airflow_cli("data", "etl", &cli).await).0,
        404
    );
    // A viewer reads the logs, but may not run commands.
    assert_eq!(
        s.viewer.logs("data", "etl", &[]).await.unwrap().lines.len(),
        1
    );
    assert_eq!(
        status(s.viewer.run_airflow_cli("data", "etl", &cli).await).0,
        403
    );
    // Only a cell's own agent sends lines, and only for environments on its cell.
    assert_eq!(
        status(s.editor.post_log_lines("local", &Default::default()).await).0,
        403
    );
    let stranger = app.registered_agent("elsewhere", 10).await.unwrap();
    let mut shipper = s.shipper();
    s.append("scheduler", &now_line("info", "forged"));
    let mut batch = shipper.read(&s.sources(), Utc::now());
    batch.environments[0]
        .lines
        .retain(|l| l.message.ends_with("forged"));
    stranger
        .client
        .post_log_lines("elsewhere", &batch)
        .await
        .unwrap();
    let lines = s.viewer.logs("data", "etl", &[]).await.unwrap().lines;
    assert!(
        lines.iter().all(|l| !l.message.ends_with("forged")),
        "{lines:?}"
    );
}
