//! The platform's own processes killed with SIGKILL on real Airflow: the control plane
//! (`hangar serve`) mid-create, mid-update and mid-delete, and the agent (`hangar agent`)
//! mid-apply while a worker drains. After a restart each change converges: one audit entry per
//! change, no task killed or run twice, no process doubled, and nothing of a deleted
//! environment left behind (database, role, Redis user, Unix user, folder, logs in the bucket).
//! And the platform Postgres, then its Redis, restarted under load: everything reconnects by
//! itself.

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use hangar_client::Client;
use hangar_tenants::api::{CreateEnvironment, Role, UpdateEnvironment};
use hangar_tenants::{EnvironmentClass, Phase};
use hangar_tests::runs::{deploy, run_state, task_instances, trigger};
use hangar_tests::{spawn_stack_opts, spawn_stack_with, wait_for_phase, Stack, StackOptions};
use uuid::Uuid;

use super::{alive, start_agent_at};

/// One task that sleeps a minute: running through the update and both kills.
const LONG_NAP: &str = r#"
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def long_nap():
    @task
    def nap():
        import time
        time.sleep(60)
        return "rested"

    nap()


long_nap()
"#;

/// The control plane and the agent as processes of their own, killed and started again.
struct Platform<'a> {
    stack: &'a Stack,
    listen: SocketAddr,
    url: String,
    serve: Option<Child>,
    agent: Option<Child>,
}

impl Platform<'_> {
    async fn start_control_plane(&mut self) {
        let bucket = format!("file://{}", self.stack.bucket.display());
        let log = self.stack.dir.join("serve.log");
        self.serve = Some(
            self.stack
                .app
                .serve_process(self.listen, &bucket, &log)
                .unwrap(),
        );
        let health = format!("{}/healthz", self.url);
        let start = Instant::now();
        while !reqwest::get(&health)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the control plane did not start; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill_control_plane(&mut self) {
        let mut serve = self.serve.take().unwrap();
        serve.kill().unwrap();
        serve.wait().unwrap();
    }

    fn start_agent(&mut self) {
        self.agent = Some(start_agent_at(self.stack, &self.url, &[]));
    }

    fn kill_agent(&mut self) {
        let mut agent = self.agent.take().unwrap();
        agent.kill().unwrap();
        agent.wait().unwrap();
    }
}

impl Drop for Platform<'_> {
    fn drop(&mut self) {
        for mut child in [self.serve.take(), self.agent.take()].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The changes asked of `env` in the tenant's audit log (create, update, delete), oldest
/// first; the phase changes the agent reported are left out.
async fn env_audit(c: &Client, tenant: &str, env: &str) -> Vec<String> {
    let changes = [
        "environment.create",
        "environment.update",
        "environment.delete",
    ];
    let mut actions: Vec<(i64, String)> = c
        .audit(tenant)
        .await
        .unwrap()
        .entries
        .into_iter()
        .filter(|e| changes.contains(&e.action.as_str()) && e.target.ends_with(env))
        .map(|e| (e.id, e.action))
        .collect();
    actions.sort();
    actions.into_iter().map(|(_, a)| a).collect()
}

/// The pid in each of the environment's component pid files, by component.
fn components(stack: &Stack, env: Uuid) -> Vec<(String, u32)> {
    let run = stack.env_home(env).join("run");
    let mut out: Vec<(String, u32)> = std::fs::read_dir(run)
        .map(|d| {
            d.flatten()
                .filter_map(|f| {
                    let name = f.path().file_stem()?.to_str()?.to_owned();
                    let pid = std::fs::read_to_string(f.path())
                        .ok()?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()?;
                    Some((name, pid))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The environment's Unix user's id, if the user exists.
fn env_uid(env: Uuid) -> Option<u32> {
    let name = format!("hangar-{}", &env.simple().to_string()[..12]);
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[0] == name)
        .and_then(|f| f[2].parse().ok())
}

/// The live processes of `uid` whose parent is not one of its own: the roots of the
/// environment's process trees (its components, and a worker that drains).
fn process_roots(uid: u32) -> Vec<u32> {
    let owner_and_parent = |pid: u32| -> Option<(u32, u32)> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u32>().ok())
        };
        Some((field("Uid:")?, field("PPid:")?))
    };
    let mut roots: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            owner_and_parent(*pid).is_some_and(|(owner, parent)| {
                owner == uid && owner_and_parent(parent).is_none_or(|(o, _)| o != uid)
            })
        })
        .collect();
    roots.sort_unstable();
    roots
}

/// Waits until the run ends; it must succeed with every task on its first try.
pub(crate) async fn first_try_success(c: &Client, tenant: &str, env: &str, dag: &str, run: &str) {
    let start = Instant::now();
    loop {
        match run_state(c, tenant, env, dag, run).await.as_str() {
            "success" => break,
            "failed" => panic!("{:#?}", task_instances(c, tenant, env, dag, run).await),
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{dag} never ended: {:#?}",
            task_instances(c, tenant, env, dag, run).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for t in task_instances(c, tenant, env, dag, run).await {
        assert!(
            t["state"] == "success" && t["try_number"] == 1,
            "not a first-try success: {t}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_control_plane_and_agent_lose_no_change_and_no_task() {
    let stack = spawn_stack_with(false).await.unwrap();
    let token = stack
        .app
        .token_with_role("omicron", Role::Admin)
        .await
        .unwrap();
    // From here on the control plane is `hangar serve` on a port of its own, and the agent
    // `hangar agent` talking to it.
    stack.app.stop();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{listen}");
    let mut p = Platform {
        stack: &stack,
        listen,
        url: url.clone(),
        serve: None,
        agent: None,
    };
    p.start_control_plane().await;
    p.start_agent();
    let c = hangar_tests::client(&url, Some(&token));
    let (t, e) = ("omicron", "sturdy");

    // Mid-create: killed while the request is in flight, then again while the agent builds
    // the environment. The request repeated with its Idempotency-Key after the restart
    // answers for the one environment, whichever side of its commit the kill fell.
    let create = CreateEnvironment {
        name: e.into(),
        environment_class: Some(EnvironmentClass::Small),
        ..Default::default()
    };
    let key = Uuid::new_v4().to_string();
    let in_flight = {
        let (c, create, key) = (c.clone(), create.clone(), key.clone());
        tokio::spawn(async move { c.create_environment(t, &create, Some(&key)).await })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    p.kill_control_plane();
    let first = in_flight.await.unwrap();
    p.start_control_plane().await;
    let created = c.create_environment(t, &create, Some(&key)).await.unwrap();
    match first {
        Ok(first) => assert_eq!(first.environment.id, created.environment.id),
        Err(e) => eprintln!("the create in flight got no answer ({e}); its repeat: {created:?}"),
    }
    let id = created.environment.id;
    let home = stack.env_home(id);
    let start = Instant::now();
    while !home.join("run").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the agent never started building the environment"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.kill_control_plane();
    tokio::time::sleep(Duration::from_secs(5)).await;
    p.start_control_plane().await;
    let env = wait_for_phase(&c, t, e, Phase::Available, Duration::from_secs(300)).await;
    assert_eq!(env.observed.and_then(|o| o.revision), Some(1));
    assert_eq!(env_audit(&c, t, e).await, ["environment.create"]);

    // Mid-update, mid-apply and mid-drain: a bigger class replaces the worker running a task;
    // while the old worker drains, both the control plane and the agent are killed.
    deploy(&c, t, e, "long_nap", LONG_NAP).await;
    let run = trigger(&c, t, e, "long_nap").await;
    let start = Instant::now();
    while task_instances(&c, t, e, "long_nap", &run).await[0]["state"] != "running" {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the nap never ran"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let worker = |list: &[(String, u32)]| {
        list.iter()
            .find(|(n, _)| n == "worker-0")
            .map(|(_, pid)| *pid)
    };
    let old_worker = worker(&components(&stack, id)).unwrap();
    let bigger = UpdateEnvironment {
        environment_class: Some(EnvironmentClass::Medium),
        ..Default::default()
    };
    c.update_environment(t, e, &bigger, None).await.unwrap();
    let start = Instant::now();
    while worker(&components(&stack, id)).is_none_or(|w| w == old_worker) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the worker was not replaced"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    p.kill_control_plane();
    p.kill_agent();
    let during = components(&stack, id);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(alive(old_worker), "the draining worker died with the agent");
    assert!(
        during.iter().all(|(_, pid)| alive(*pid)),
        "components died with the agent: {during:?}"
    );
    p.start_control_plane().await;
    p.start_agent();
    first_try_success(&c, t, e, "long_nap", &run).await;
    let env = wait_for_phase(&c, t, e, Phase::Available, Duration::from_secs(180)).await;
    assert_eq!(env.revision, 2);
    assert_eq!(env.observed.and_then(|o| o.revision), Some(2));
    assert_eq!(
        env_audit(&c, t, e).await,
        ["environment.create", "environment.update"]
    );
    // The next agent finished the drain it adopted: the old worker is gone once its task
    // ended, and what runs is what the pid files name, each component once.
    let start = Instant::now();
    while alive(old_worker)
        || components(&stack, id)
            .iter()
            .any(|(n, _)| n.starts_with("draining-"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the drain never ended: worker alive {}, {:?}",
            alive(old_worker),
            components(&stack, id)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let uid = env_uid(id).unwrap();
    let named: Vec<u32> = {
        let mut v: Vec<u32> = components(&stack, id).iter().map(|(_, p)| *p).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(
        process_roots(uid),
        named,
        "the environment's processes are its components, none doubled: {:?}",
        components(&stack, id)
    );

    // Mid-delete: killed while the agent tears the environment down.
    c.delete_environment(t, e).await.unwrap();
    p.kill_control_plane();
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.start_control_plane().await;
    let start = Instant::now();
    loop {
        match c.get_environment(t, e).await {
            Ok(env) if env.phase == Phase::Deleted => break,
            Ok(env) => assert!(
                start.elapsed() < Duration::from_secs(120),
                "still {} after the restart",
                env.phase
            ),
            Err(hangar_client::ClientError::Api { problem }) if problem.status == 404 => break,
            Err(err) => panic!("reading {t}/{e}: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        env_audit(&c, t, e).await,
        [
            "environment.create",
            "environment.update",
            "environment.delete"
        ]
    );
    let name = format!("env_{}", id.simple());
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&stack.postgres_admin)
        .await
        .unwrap();
    let (databases, roles): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1), \
                (SELECT count(*) FROM pg_roles WHERE rolname = $1)",
    )
    .bind(&name)
    .fetch_one(&mut pg)
    .await
    .unwrap();
    assert_eq!((databases, roles), (0, 0), "{name} left in Postgres");
    let redis =
        redis::Client::open(secrecy::ExposeSecret::expose_secret(&stack.redis_admin)).unwrap();
    let mut r = redis.get_multiplexed_async_connection().await.unwrap();
    let user: Option<Vec<redis::Value>> = redis::cmd("ACL")
        .arg("GETUSER")
        .arg(format!("env-{}", id.simple()))
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(user.is_none(), "the Redis user is left: {user:?}");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("hangar:{}:*", id.simple()))
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(keys.is_empty(), "Redis keys left: {keys:?}");
    assert!(!home.exists(), "the environment's folder is left");
    assert_eq!(env_uid(id), None, "the environment's Unix user is left");
    let logs = hangar_tenants::bucket_layout::logs_prefix(t, e, id);
    let logs = stack.bucket.join(logs.to_string());
    assert!(
        !logs.exists(),
        "its logs are left in the bucket: {}",
        logs.display()
    );
    drop(p);
    stack.shutdown().await;
}

/// Six mapped tasks of 15 s each.
const NAPS: &str = r#"
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def naps():
    @task
    def nap(i):
        import time
        time.sleep(15)
        return i

    nap.expand(i=list(range(6)))


naps()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_postgres_and_redis_restarted_under_load_lose_no_task() {
    let stack = spawn_stack_opts(StackOptions {
        own_postgres: true,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let c = stack
        .app
        .tenant_with_role("pi", Role::Editor)
        .await
        .unwrap();
    let (t, e) = ("pi", "steady");
    let create = CreateEnvironment {
        name: e.into(),
        ..Default::default()
    };
    c.create_environment(t, &create, None).await.unwrap();
    wait_for_phase(&c, t, e, Phase::Available, Duration::from_secs(300)).await;
    deploy(&c, t, e, "naps", NAPS).await;
    let run = trigger(&c, t, e, "naps").await;
    let start = Instant::now();
    while !task_instances(&c, t, e, "naps", &run)
        .await
        .iter()
        .any(|ti| ti["state"] == "running")
    {
        assert!(start.elapsed() < Duration::from_secs(120), "no nap ran");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A client reads the environment throughout; Postgres restarts under it, closing every
    // connection of the control plane, the agent and the environment's Airflow.
    let stop = tokio_util::sync::CancellationToken::new();
    let reader = {
        let (c, stop) = (c.clone(), stop.clone());
        tokio::spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
            while !stop.is_cancelled() {
                let status = match c.get_environment(t, e).await {
                    Ok(_) => 200,
                    Err(hangar_client::ClientError::Api { problem }) => problem.status,
                    Err(_) => 0,
                };
                *statuses.entry(status).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.postgres.as_ref().unwrap().restart().await.unwrap();
    let restarted = Instant::now();
    while c.get_environment(t, e).await.is_err() {
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "the control plane does not answer after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back_after = restarted.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let statuses = reader.await.unwrap();
    assert!(
        statuses.keys().all(|s| [200, 503].contains(s)),
        "a failed read is a 503 that says why, nothing else: {statuses:?}"
    );
    eprintln!("reads during the restart: {statuses:?}; answering again after {back_after:?}");

    first_try_success(&c, t, e, "naps", &run).await;
    wait_for_phase(&c, t, e, Phase::Available, Duration::from_secs(120)).await;

    // The platform Redis restarts while a run's tasks are queued and running on it: the
    // scheduler's and the workers' broker connections all close.
    let run = trigger(&c, t, e, "naps").await;
    let start = Instant::now();
    while !task_instances(&c, t, e, "naps", &run)
        .await
        .iter()
        .any(|ti| ti["state"] == "running")
    {
        assert!(start.elapsed() < Duration::from_secs(120), "no nap ran");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    restart_redis(&stack).await;
    first_try_success(&c, t, e, "naps", &run).await;
    wait_for_phase(&c, t, e, Phase::Available, Duration::from_secs(120)).await;
    // And it goes on working: another run, start to end, through the restarted broker.
    let again = trigger(&c, t, e, "naps").await;
    first_try_success(&c, t, e, "naps", &again).await;
    stack.shutdown().await;
}

/// Restarts the stack's Redis: SIGTERM (it writes its append-only file and exits), down for a
/// second, then the same configuration on the same port, with what it held.
async fn restart_redis(stack: &Stack) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let dir = stack.dir.join("redis");
    let pid = std::fs::read_to_string(dir.join("redis.pid")).unwrap();
    let pid = Pid::from_raw(pid.trim().parse().unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let start = Instant::now();
    // Daemonized: not the test's child, so it leaves no zombie to wait for.
    while kill(pid, None).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Redis did not stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = tokio::process::Command::new("redis-server")
        .arg(dir.join("redis.conf"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The daemon writes its pid file after its parent returned.
    let start = Instant::now();
    while std::fs::read_to_string(dir.join("redis.pid"))
        .map_or(true, |again| again.trim() == pid.to_string())
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "Redis was not restarted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
