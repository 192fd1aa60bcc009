//! The cell's pool of task slots (`executor: "hangar"`) on real Airflow: every task a process
//! of its own from one pool shared by the cell's environments, split by weight, beside a Celery
//! environment, and no task lost when the agent is killed.

use std::path::Path;
use std::time::{Duration, Instant};

use hangar_client::Client;
use hangar_tenants::api::{CreateEnvironment, Role};
use hangar_tenants::{EnvironmentClass, Executor, Phase};
use hangar_tests::runs::{deploy, run_state, task_instances, task_log, trigger};
use hangar_tests::{spawn_stack_opts, spawn_stack_with, wait_for_phase, StackOptions};
use uuid::Uuid;

use super::{alive, start_agent_with};

/// `n` mapped tasks sleeping `secs` each, whose results a last task adds up (XCom).
fn naps(dag: &str, n: u32, secs: u32) -> String {
    format!(
        r#"
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="{dag}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def naps():
    @task
    def nap(i):
        import time
        time.sleep({secs})
        print(f"napped {{i}} in the task pool")
        return i

    @task
    def total(xs):
        return sum(xs)

    total(nap.expand(i=list(range({n}))))


naps()
"#
    )
}

/// A task that fails its first try and succeeds its retry, and one deferred to the triggerer.
const TRICKY: &str = r#"
from datetime import datetime, timedelta

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import BaseOperator, dag, task


class Pause(BaseOperator):
    def execute(self, context):
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=3)), method_name="done")

    def done(self, context, event=None):
        return "resumed"


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def tricky():
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def flaky(ti=None):
        if ti.try_number == 1:
            raise RuntimeError("the first try fails on purpose")
        return "second try"

    flaky() >> Pause(task_id="pause")


tricky()
"#;

fn hangar(name: &str, weight: u32) -> CreateEnvironment {
    CreateEnvironment {
        name: name.into(),
        executor: Some(Executor::Hangar),
        environment_class: Some(EnvironmentClass::Micro),
        worker_weight: Some(weight),
        ..Default::default()
    }
}

/// Task processes the pool runs for an environment now, and tasks it holds (queued or
/// running), from the environment's tasks folder.
fn pool_view(home: &Path) -> (usize, usize) {
    let count = |ext: &str| {
        std::fs::read_dir(home.join("tasks"))
            .map(|d| {
                d.flatten()
                    .filter(|f| f.path().extension().is_some_and(|x| x == ext))
                    .count()
            })
            .unwrap_or(0)
    };
    (count("pid"), count("task"))
}

/// The task log files (`attempt=<n>.log`) under `dir`.
fn attempt_logs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                attempt_logs(&p)
            } else {
                usize::from(e.file_name().to_string_lossy().starts_with("attempt="))
            }
        })
        .sum()
}

/// Waits for a run to end; it must succeed.
async fn wait_success(c: &Client, tenant: &str, env: &str, dag: &str, run: &str, within: Duration) {
    let start = Instant::now();
    loop {
        let state = run_state(c, tenant, env, dag, run).await;
        match state.as_str() {
            "success" => return,
            "failed" => {
                let tis = task_instances(c, tenant, env, dag, run).await;
                panic!("{tenant}/{env} {dag} failed: {tis:#?}");
            }
            _ => {}
        }
        assert!(
            start.elapsed() < within,
            "{tenant}/{env} {dag} still {state} after {within:?}: {:#?}",
            task_instances(c, tenant, env, dag, run).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every task instance of the run succeeded on its first try; returns them.
async fn first_try_successes(
    c: &Client,
    tenant: &str,
    env: &str,
    dag: &str,
    run: &str,
) -> Vec<serde_json::Value> {
    let tis = task_instances(c, tenant, env, dag, run).await;
    for t in &tis {
        assert!(
            t["state"] == "success" && t["try_number"] == 1,
            "{tenant}/{env} {dag}: not a first-try success: {t}"
        );
    }
    tis
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_pool_shares_its_slots_by_weight_beside_a_celery_environment() {
    // Four slots for two environments weighted 1:3 that each queue twelve tasks.
    let stack = spawn_stack_opts(StackOptions {
        task_slots: Some(4),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let light_c = stack
        .app
        .tenant_with_role("kappa", Role::Editor)
        .await
        .unwrap();
    let heavy_c = stack
        .app
        .tenant_with_role("lambda", Role::Editor)
        .await
        .unwrap();
    let celery_c = stack
        .app
        .tenant_with_role("mu", Role::Editor)
        .await
        .unwrap();
    let light = light_c
        .create_environment("kappa", &hangar("light", 1), None)
        .await
        .unwrap()
        .environment
        .id;
    let heavy = heavy_c
        .create_environment("lambda", &hangar("heavy", 3), None)
        .await
        .unwrap()
        .environment
        .id;
    let classic = CreateEnvironment {
        name: "classic".into(),
        environment_class: Some(EnvironmentClass::Micro),
        ..Default::default()
    };
    celery_c
        .create_environment("mu", &classic, None)
        .await
        .unwrap();
    for (c, t, e) in [
        (&light_c, "kappa", "light"),
        (&heavy_c, "lambda", "heavy"),
        (&celery_c, "mu", "classic"),
    ] {
        wait_for_phase(c, t, e, Phase::Available, Duration::from_secs(300)).await;
    }
    let dag = naps("spread", 12, 6);
    deploy(&light_c, "kappa", "light", "spread", &dag).await;
    deploy(&heavy_c, "lambda", "heavy", "spread", &dag).await;
    deploy(&light_c, "kappa", "light", "tricky", TRICKY).await;
    deploy(&celery_c, "mu", "classic", "spread", &naps("spread", 3, 2)).await;
    let runs = [
        trigger(&light_c, "kappa", "light", "spread").await,
        trigger(&heavy_c, "lambda", "heavy", "spread").await,
    ];
    let classic_run = trigger(&celery_c, "mu", "classic", "spread").await;

    // While both have tasks waiting in the pool, the slots they hold go 1:3.
    let (light_home, heavy_home) = (stack.env_home(light), stack.env_home(heavy));
    let (mut held, mut most, start) = ([0usize; 2], 0, Instant::now());
    let (mut seen, mut handed_over) = (Vec::new(), false);
    // What the environment reports of its tasks in the pool (the most waiting and running).
    let mut reported = (0, 0);
    loop {
        if seen.len() % 10 == 0 {
            let e = heavy_c.get_environment("lambda", "heavy").await.unwrap();
            if let Some(w) = e.observed.and_then(|o| o.workers) {
                assert_eq!((w.desired, w.actual, w.draining), (0, 0, 0), "{w:?}");
                reported = (reported.0.max(w.queued), reported.1.max(w.running));
            }
        }
        let (l, h) = (pool_view(&light_home), pool_view(&heavy_home));
        seen.push(format!("{}/{} {}/{}", l.0, l.1, h.0, h.1));
        most = most.max(l.0 + h.0);
        // Nothing running is taken back: whoever queued first holds every slot until its
        // first tasks end. From the first hand-over on, while both wait for slots and want at
        // least their share (1 and 3), freed slots go by weight.
        handed_over |= l.0 > 0 && h.0 > 0;
        if handed_over && l.1 > l.0 && h.1 > h.0 && h.1 >= 3 {
            held[0] += l.0;
            held[1] += h.0;
        }
        let done = run_state(&light_c, "kappa", "light", "spread", &runs[0]).await == "success"
            && run_state(&heavy_c, "lambda", "heavy", "spread", &runs[1]).await == "success";
        if done {
            break;
        }
        // A deadline for the bursts, not a speed test: with the suite's other end-to-end tests
        // running beside it on two cores, a 6-second nap has been seen to take half a minute.
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the bursts did not finish: light {:#?}\nheavy {:#?}",
            task_instances(&light_c, "kappa", "light", "spread", &runs[0]).await,
            task_instances(&heavy_c, "lambda", "heavy", "spread", &runs[1]).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(most <= 4, "the pool ran {most} tasks at once on 4 slots");
    assert!(
        reported.0 > 0 && (1..=4).contains(&reported.1),
        "observed.workers showed at most {} waiting and {} running",
        reported.0,
        reported.1
    );
    assert!(held[0] > 0, "contention seen: {held:?}");
    #[allow(clippy::cast_precision_loss)]
    let ratio = held[1] as f64 / held[0] as f64;
    assert!(
        (2.0..=4.5).contains(&ratio),
        "slot-time while contended went {held:?} (heavy/light {ratio:.2}), not about 3:1; \
         running/held of light and heavy, as sampled: {}",
        seen.join(", ")
    );
    for (c, t, e, run) in [
        (&light_c, "kappa", "light", &runs[0]),
        (&heavy_c, "lambda", "heavy", &runs[1]),
    ] {
        let tis = first_try_successes(c, t, e, "spread", run).await;
        assert_eq!(tis.len(), 13, "12 naps and their total");
        let (_, xcom) = hangar_tests::airflow_api(
            c,
            t,
            e,
            reqwest::Method::GET,
            &format!("dags/spread/dagRuns/{run}/taskInstances/total/xcomEntries/return_value"),
            None,
        )
        .await;
        assert_eq!(xcom["value"], 66, "{xcom}");
        let nap = tis.iter().find(|t| t["task_id"] == "nap").unwrap();
        let log = task_log(c, t, e, "spread", run, nap).await;
        assert!(log.contains("in the task pool"), "{log}");
    }
    wait_success(
        &celery_c,
        "mu",
        "classic",
        "spread",
        &classic_run,
        Duration::from_secs(120),
    )
    .await;
    first_try_successes(&celery_c, "mu", "classic", "spread", &classic_run).await;

    // Retries and deferral: the retry is a new task in the pool, the resumed task too.
    let run = trigger(&light_c, "kappa", "light", "tricky").await;
    wait_success(
        &light_c,
        "kappa",
        "light",
        "tricky",
        &run,
        Duration::from_secs(180),
    )
    .await;
    let tis = task_instances(&light_c, "kappa", "light", "tricky", &run).await;
    let flaky = tis.iter().find(|t| t["task_id"] == "flaky").unwrap();
    assert_eq!(flaky["try_number"], 2, "{flaky}");
    let pause = tis.iter().find(|t| t["task_id"] == "pause").unwrap();
    assert_eq!(pause["state"], "success", "{pause}");
    // A task's process exits a moment after its task instance is marked done.
    let start = Instant::now();
    while pool_view(&light_home) != (0, 0) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "left in the pool: {:?}",
            pool_view(&light_home)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_loses_no_task_of_the_pool() {
    let stack = spawn_stack_with(false).await.unwrap();
    let c = stack
        .app
        .tenant_with_role("nu", Role::Editor)
        .await
        .unwrap();
    let slots = [("HANGAR_TASK_SLOTS", "3")];
    let mut agent = start_agent_with(&stack, &slots);
    let id: Uuid = c
        .create_environment("nu", &hangar("etl", 1), None)
        .await
        .unwrap()
        .environment
        .id;
    wait_for_phase(&c, "nu", "etl", Phase::Available, Duration::from_secs(300)).await;
    deploy(&c, "nu", "etl", "burst", &naps("burst", 9, 10)).await;
    let run = trigger(&c, "nu", "etl", "burst").await;
    let home = stack.env_home(id);
    let start = Instant::now();
    while pool_view(&home).0 == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no task started"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // kill -9 the agent mid-burst: its task processes keep running.
    let (running, held) = pool_view(&home);
    agent.kill().unwrap();
    agent.wait().unwrap();
    let pids: Vec<u32> = std::fs::read_dir(home.join("tasks"))
        .unwrap()
        .flatten()
        .filter(|f| f.path().extension().is_some_and(|x| x == "pid"))
        .filter_map(|f| {
            std::fs::read_to_string(f.path())
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(pids.len(), running);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        pids.iter().all(|p| alive(*p)),
        "task processes died with the agent"
    );

    // The next agent adopts them and runs what was queued; every task runs once.
    let mut next = start_agent_with(&stack, &slots);
    wait_success(&c, "nu", "etl", "burst", &run, Duration::from_secs(300)).await;
    let tis = first_try_successes(&c, "nu", "etl", "burst", &run).await;
    assert_eq!(tis.len(), 10, "9 naps and their total");
    assert!(held >= running, "{held} held, {running} running");
    let attempts = attempt_logs(&home.join("logs").join("dag_id=burst"));
    assert_eq!(attempts, 10, "one log file per task: none ran twice");
    next.kill().unwrap();
    next.wait().unwrap();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_scheduler_adopts_the_pools_tasks_and_a_task_over_its_memory_dies_alone() {
    let stack = spawn_stack_opts(StackOptions {
        task_slots: Some(3),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let c = stack
        .app
        .tenant_with_role("xi", Role::Editor)
        .await
        .unwrap();
    // The dead scheduler is noticed after 10 s and its tasks looked at every 5 s (Airflow's
    // defaults: 30 s and 5 minutes).
    let req = CreateEnvironment {
        airflow_config_overrides: Some(
            [
                ("scheduler.scheduler_health_check_threshold", "10"),
                ("scheduler.orphaned_tasks_check_interval", "5"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ),
        ..hangar("etl", 1)
    };
    let id = c
        .create_environment("xi", &req, None)
        .await
        .unwrap()
        .environment
        .id;
    wait_for_phase(&c, "xi", "etl", Phase::Available, Duration::from_secs(300)).await;
    deploy(&c, "xi", "etl", "long", &naps("long", 3, 40)).await;
    let run = trigger(&c, "xi", "etl", "long").await;
    let home = stack.env_home(id);
    let start = Instant::now();
    while pool_view(&home).0 < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{:?}",
            pool_view(&home)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // kill -9 the scheduler: its supervisor starts another, which finds the dead one's tasks.
    let scheduler: i32 = std::fs::read_to_string(home.join("run/scheduler-0.pid"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    std::process::Command::new("kill")
        .args(["-9", &scheduler.to_string()])
        .status()
        .unwrap();
    wait_success(&c, "xi", "etl", "long", &run, Duration::from_secs(240)).await;
    // Adopted, not reset: a reset task instance would have run again as its second try.
    let tis = first_try_successes(&c, "xi", "etl", "long", &run).await;
    assert_eq!(tis.len(), 4, "3 naps and their total");
    // And the new scheduler says so (its executor asked the pool).
    let start = Instant::now();
    loop {
        let page = c
            .logs("xi", "etl", &[("q", "from the task pool".into())])
            .await
            .unwrap();
        if page
            .lines
            .iter()
            .any(|l| l.message.contains("Adopted 3 of 3 task instances"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no adoption in the scheduler's log: {:?}",
            page.lines
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // A task that allocates past its memory (512 MiB for class micro) is killed alone: the
    // task beside it and the environment's components go on. That task also finds none of
    // the environment's secrets.
    let scheduler_now = std::fs::read_to_string(home.join("run/scheduler-0.pid")).unwrap();
    deploy(&c, "xi", "etl", "hog", HOG).await;
    let run = trigger(&c, "xi", "etl", "hog").await;
    let start = Instant::now();
    loop {
        let tis = task_instances(&c, "xi", "etl", "hog", &run).await;
        let state = |id: &str| {
            tis.iter()
                .find(|t| t["task_id"] == id)
                .map(|t| t["state"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default()
        };
        if state("calm") == "success" && state("hog") == "failed" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "hog and calm: {tis:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = std::fs::read_to_string(home.join("components/tasks.log")).unwrap_or_default();
    let page = c
        .logs("xi", "etl", &[("q", "MiB of memory".into())])
        .await
        .unwrap();
    assert!(
        log.contains("killed for using more than its 512 MiB of memory")
            || page
                .lines
                .iter()
                .any(|l| l.message.contains("512 MiB of memory")),
        "the pool says why"
    );
    assert_eq!(
        std::fs::read_to_string(home.join("run/scheduler-0.pid")).unwrap(),
        scheduler_now,
        "the scheduler kept running"
    );
    stack.shutdown().await;
}

/// A task that allocates without bound, beside one that sleeps.
const HOG: &str = r#"
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def hog():
    @task
    def hog():
        chunks = []
        while True:
            chunks.append(bytearray(64 << 20))

    @task
    def calm():
        # A task of the pool has none of its environment's secrets: not in its settings file
        # or variables, not readable in the environment's folder, not in its components'
        # memory or variables.
        import os
        import time

        home = os.environ["AIRFLOW_HOME"]
        assert os.environ["AIRFLOW_CONFIG"] == os.path.join(home, "task.cfg")
        assert "HANGAR_TASK_POOL_SOCKET" not in os.environ
        # (The task runner sets its own sql_alchemy_conn, which refuses any use.)
        leaked = [
            k
            for k, v in os.environ.items()
            if "postgres" in v or "redis://" in v or any(s in k for s in ["JWT", "FERNET", "SECRET"])
        ]
        assert not leaked, leaked
        for secret in ["airflow.cfg", "simple_auth_manager_passwords.json"]:
            try:
                open(os.path.join(home, secret)).read()
            except PermissionError:
                pass
            else:
                raise AssertionError(f"a task read {secret}")
        # The environment's components run as the same user, yet a task cannot read their
        # memory or environment (nor, so, their command lines).
        mine = {os.getpid(), os.getppid()}
        others = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if int(pid) in mine or os.stat(f"/proc/{pid}").st_uid != os.getuid():
                    continue
            except OSError:
                continue
            others += 1
            for part in ["environ", "mem", "cmdline"]:
                try:
                    open(f"/proc/{pid}/{part}", "rb").read(1)
                except (PermissionError, ProcessLookupError, FileNotFoundError):
                    pass
                else:
                    raise AssertionError(f"a task read /proc/{pid}/{part}")
        assert others >= 3, f"the scheduler, dag-processor and api-server are listed: {others}"
        time.sleep(20)
        return "calm"

    hog()
    calm()


hog()
"#;
