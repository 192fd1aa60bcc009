//! A hostile tenant on the process runtime, on real Airflow: a task of tenant A tries everything
//! a tenant's code could try against tenant B and the platform, and each attempt is asserted on
//! its own; a task of A that allocates without bound is killed inside A's cgroup while B's DAG
//! run succeeds at the same time. Run from the two-tenant test, on its environments.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hangar_client::Client;
use hangar_tests::{airflow_api, Stack};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// Every attempt returns `ALLOWED: …` or `refused: <exception>`; a few sanity checks (its own
/// files) must be allowed, so that a refusal is known to come from isolation, not a broken task.
const HOSTILE: &str = r#"
import configparser, json, os, signal, sys
from datetime import datetime
from urllib.parse import urlparse

from airflow.sdk import dag, task

B_PIDS = __B_PIDS__
AGENT_PID = __AGENT_PID__
B_HOME = "__B_HOME__"
AGENT_DIR = "__AGENT_DIR__"
PG_PORT = __PG_PORT__
REDIS_PORT = __REDIS_PORT__
B_DB = "__B_DB__"
B_BROKER_USER = "__B_BROKER_USER__"
B_PREFIX = "__B_PREFIX__"


def attempt(fn):
    try:
        return "ALLOWED: " + repr(fn())[:300]
    except BaseException as e:
        return "refused: " + type(e).__name__ + ": " + str(e)[:300]


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def write(path):
    with open(path, "w") as f:
        return f.write("pwned")


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def hostile():
    @task
    def probe():
        import psycopg2
        import redis

        r = {}
        home = os.environ["AIRFLOW_HOME"]
        cfg = configparser.ConfigParser()
        cfg.read(os.environ["AIRFLOW_CONFIG"])
        db = urlparse(cfg["database"]["sql_alchemy_conn"].replace("+psycopg2", ""))
        broker = urlparse(cfg["celery"]["broker_url"])
        # What it may do: its own configuration, database, broker and scratch folder.
        r["own_config"] = attempt(lambda: len(read(os.environ["AIRFLOW_CONFIG"])))
        r["own_database"] = attempt(lambda: psycopg2.connect(
            host="127.0.0.1", port=PG_PORT, user=db.username, password=db.password,
            dbname=db.path.lstrip("/")).close())
        r["own_scratch_write"] = attempt(lambda: write(os.path.join(home, "tmp", "mine")))
        r["uid"] = os.getuid()
        r["groups"] = os.getgroups()
        r["cgroup"] = read("/proc/self/cgroup")
        r["own_environment"] = dict(os.environ)

        for pid in B_PIDS:
            r[f"environ of B's {pid}"] = attempt(lambda: read(f"/proc/{pid}/environ", "rb"))
            r[f"cmdline of B's {pid}"] = attempt(lambda: read(f"/proc/{pid}/cmdline", "rb"))
            r[f"signal B's {pid}"] = attempt(lambda: os.kill(pid, signal.SIGTERM))
        r["environ of the agent"] = attempt(lambda: read(f"/proc/{AGENT_PID}/environ", "rb"))
        r["cmdline of the agent"] = attempt(lambda: read(f"/proc/{AGENT_PID}/cmdline", "rb"))
        r["signal the agent"] = attempt(lambda: os.kill(AGENT_PID, 0))

        r["list B's home"] = attempt(lambda: os.listdir(B_HOME))
        r["read B's config"] = attempt(lambda: read(os.path.join(B_HOME, "airflow.cfg")))
        r["read B's DAG"] = attempt(lambda: read(os.path.join(B_HOME, "dags", "where_am_i.py")))
        r["list the agent's folder"] = attempt(lambda: os.listdir(AGENT_DIR))
        r["list every environment"] = attempt(lambda: os.listdir(os.path.join(AGENT_DIR, "envs")))
        r["read the platform Redis ACL"] = attempt(lambda: read(os.path.join(AGENT_DIR, "redis", "users.acl")))
        r["read the platform Redis password"] = attempt(lambda: read(os.path.join(AGENT_DIR, "redis", "password")))
        r["read the machine's shadow file"] = attempt(lambda: read("/etc/shadow"))

        r["B's database as its own role"] = attempt(lambda: psycopg2.connect(
            host="127.0.0.1", port=PG_PORT, user=db.username, password=db.password,
            dbname=B_DB, connect_timeout=5).close())
        for user in ["hangar", "postgres"]:
            r[f"platform Postgres as {user}"] = attempt(lambda: psycopg2.connect(
                host="127.0.0.1", port=PG_PORT, user=user, password="", dbname="postgres",
                connect_timeout=5).close())
            r[f"platform Postgres as {user} with its own password"] = attempt(lambda: psycopg2.connect(
                host="127.0.0.1", port=PG_PORT, user=user, password=db.password, dbname="postgres",
                connect_timeout=5).close())
        r["platform Redis without a password"] = attempt(
            lambda: redis.Redis(host="127.0.0.1", port=REDIS_PORT, socket_timeout=5).keys("*"))
        r["B's broker user with its own password"] = attempt(lambda: redis.Redis(
            host="127.0.0.1", port=REDIS_PORT, username=B_BROKER_USER, password=broker.password,
            socket_timeout=5).ping())
        r["B's broker keys as its own user"] = attempt(lambda: redis.Redis(
            host="127.0.0.1", port=REDIS_PORT, username=broker.username, password=broker.password,
            socket_timeout=5).lrange(B_PREFIX + "default", 0, -1))

        r["write /tmp"] = attempt(lambda: write(f"/tmp/hangar-hostile-{os.getpid()}"))
        r["write B's home"] = attempt(lambda: write(os.path.join(B_HOME, "logs", "pwned")))
        r["write its runtime"] = attempt(lambda: write(os.path.join(sys.prefix, "pwned")))
        r["write its own DAG folder"] = attempt(lambda: write(os.path.join(home, "dags", "pwned.py")))
        r["write its own configuration"] = attempt(lambda: write(os.path.join(home, "ports.json")))
        r["write the agent's folder"] = attempt(lambda: write(os.path.join(AGENT_DIR, "pwned")))
        return json.dumps(r)

    probe()


hostile()
"#;

/// Allocates memory until something stops it.
const HOG: &str = r#"
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, default_args={"retries": 0})
def hog():
    @task
    def eat():
        chunks = []
        while True:
            chunks.append(b"x" * (64 << 20))

    eat()


hog()
"#;

async fn put_dag(client: &Client, tenant: &str, file: &str, body: String) {
    let r = client
        .request(
            Method::PUT,
            &format!("v1/tenants/{tenant}/environments/etl/dags/{file}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Unpauses and triggers `dag` once it is listed, and waits for the run to end: its state and
/// the XCom `return_value` of `task`.
async fn trigger_and_wait(client: &Client, tenant: &str, dag: &str, task: &str) -> (String, Value) {
    let api = |method, path: String, body| async move {
        airflow_api(client, tenant, "etl", method, &path, body).await
    };
    let start = Instant::now();
    while api(Method::GET, format!("dags/{dag}"), None).await.0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{dag} not listed"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (s, _) = api(
        Method::PATCH,
        format!("dags/{dag}"),
        Some(json!({"is_paused": false})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, run) = api(
        Method::POST,
        format!("dags/{dag}/dagRuns"),
        Some(json!({"logical_date": null})),
    )
    .await;
    assert_eq!(s, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    let state = loop {
        let (_, r) = api(Method::GET, format!("dags/{dag}/dagRuns/{run_id}"), None).await;
        if let Some(s @ ("success" | "failed")) = r["state"].as_str() {
            break s.to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "{dag} not done: {r}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let (_, x) = api(
        Method::GET,
        format!("dags/{dag}/dagRuns/{run_id}/taskInstances/{task}/xcomEntries/return_value"),
        None,
    )
    .await;
    (state, x["value"].clone())
}

fn secret_values(s: &hangar_tenants::api::EnvironmentSecrets) -> [&str; 6] {
    [
        &s.db_password,
        &s.broker_password,
        &s.fernet_key,
        &s.jwt_secret,
        &s.api_secret_key,
        &s.admin_password,
    ]
}

/// A task of `a` attempts to reach `b` and the platform; every attempt fails, each asserted.
pub async fn a_hostile_task_reaches_nothing_of_another_tenant_or_the_platform(
    stack: &Stack,
    alpha: &Client,
    a: Uuid,
    b: Uuid,
) {
    let b_pids = crate::pids(stack, b);
    assert!(b_pids.len() >= 4, "{b_pids:?}");
    let pg_port = url::Url::parse(&stack.postgres_admin)
        .unwrap()
        .port()
        .unwrap();
    let dag = HOSTILE
        .replace("__B_PIDS__", &format!("{b_pids:?}"))
        .replace("__AGENT_PID__", &std::process::id().to_string())
        .replace("__B_HOME__", &stack.env_home(b).display().to_string())
        .replace("__AGENT_DIR__", &stack.dir.display().to_string())
        .replace("__PG_PORT__", &pg_port.to_string())
        .replace("__REDIS_PORT__", &stack.redis_port.to_string())
        .replace("__B_DB__", &format!("env_{}", b.simple()))
        .replace("__B_BROKER_USER__", &format!("env-{}", b.simple()))
        .replace("__B_PREFIX__", &format!("hangar:{}:", b.simple()));
    put_dag(alpha, "alpha", "hostile.py", dag).await;
    let (state, value) = trigger_and_wait(alpha, "alpha", "hostile", "probe").await;
    assert_eq!(state, "success", "the hostile task ran to its end: {value}");
    let r: BTreeMap<String, Value> = serde_json::from_str(value.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the task's report ({e}): {value}"));
    let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();

    // It ran as A's own user, without supplementary groups, in A's cgroups, and with no secret
    // in its environment; what is its own it may use.
    let secrets = crate::secrets_by_env(stack).await;
    let a_logs = std::fs::metadata(stack.env_home(a).join("logs")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(r["uid"], json!(a_logs.uid()), "{r:?}");
    assert_ne!(r["uid"], json!(0));
    assert_eq!(r["groups"], json!([]), "no supplementary group: {r:?}");
    assert!(text("cgroup").contains(&a.simple().to_string()), "{r:?}");
    let environment = r["own_environment"].to_string();
    for secret in secret_values(&secrets[&a]) {
        assert!(!environment.contains(secret), "{environment}");
    }
    for allowed in ["own_config", "own_database", "own_scratch_write"] {
        assert!(text(allowed).starts_with("ALLOWED"), "{allowed}: {r:?}");
    }
    let mut refused = vec![
        "environ of the agent".to_owned(),
        "cmdline of the agent".to_owned(),
        "signal the agent".to_owned(),
        "list B's home".to_owned(),
        "read B's config".to_owned(),
        "read B's DAG".to_owned(),
        "list the agent's folder".to_owned(),
        "list every environment".to_owned(),
        "read the platform Redis ACL".to_owned(),
        "read the platform Redis password".to_owned(),
        "read the machine's shadow file".to_owned(),
        "B's database as its own role".to_owned(),
        "platform Postgres as hangar".to_owned(),
        "platform Postgres as hangar with its own password".to_owned(),
        "platform Postgres as postgres".to_owned(),
        "platform Postgres as postgres with its own password".to_owned(),
        "platform Redis without a password".to_owned(),
        "B's broker user with its own password".to_owned(),
        "B's broker keys as its own user".to_owned(),
        "write /tmp".to_owned(),
        "write B's home".to_owned(),
        "write its runtime".to_owned(),
        "write its own DAG folder".to_owned(),
        "write its own configuration".to_owned(),
        "write the agent's folder".to_owned(),
    ];
    for pid in &b_pids {
        refused.push(format!("environ of B's {pid}"));
        refused.push(format!("cmdline of B's {pid}"));
        refused.push(format!("signal B's {pid}"));
    }
    for attempt in &refused {
        assert!(
            r.get(attempt)
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with("refused")),
            "{attempt} was not refused: {:?}",
            r.get(attempt)
        );
    }
    for pid in b_pids {
        assert!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok(),
            "B's {pid} still runs"
        );
    }
}

/// The memory counter of `env`'s cgroup that counts OOM kills.
fn oom_kills(stack: &Stack, env: Uuid) -> u64 {
    let id = env.simple().to_string();
    let v2 = std::path::Path::new("/sys/fs/cgroup")
        .join(&stack.cgroup_parent)
        .join(&id);
    let (file, key) = if v2.join("memory.events").exists() {
        (v2.join("memory.events"), "oom_kill")
    } else {
        (
            std::path::Path::new("/sys/fs/cgroup/memory")
                .join(&stack.cgroup_parent)
                .join(&id)
                .join("memory.oom_control"),
            "oom_kill",
        )
    };
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or(0)
}

/// A task of `a` that allocates without bound is killed in `a`'s cgroup, while `b`'s DAG runs
/// to success at the same time and `a` keeps answering.
pub async fn a_memory_hog_is_killed_inside_its_environment(
    stack: &Stack,
    alpha: &Client,
    a: Uuid,
    run_in_b: impl std::future::Future<Output = String>,
) {
    let before = oom_kills(stack, a);
    put_dag(alpha, "alpha", "hog.py", HOG.to_owned()).await;
    let ((state, _), b_result) =
        tokio::join!(trigger_and_wait(alpha, "alpha", "hog", "eat"), run_in_b);
    assert_eq!(state, "failed", "the hog was stopped");
    assert!(
        oom_kills(stack, a) > before,
        "killed by its environment's memory limit"
    );
    assert!(!b_result.is_empty(), "B's run succeeded meanwhile");
    let (s, _) = airflow_api(alpha, "alpha", "etl", Method::GET, "dags", None).await;
    assert_eq!(s, 200, "A still answers");
}
