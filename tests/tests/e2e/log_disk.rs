//! A full disk under an environment's task logs, on real Airflow: a small tmpfs mounted over
//! its `logs` folder and filled to the last byte while a task writes its log. The task keeps
//! running and succeeds on its first try; while the disk is full the agent reports it (in the
//! environment's `observed.log_disk` and in `/metrics`); once there is room again the task's
//! log says how many lines were dropped, and goes on.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hangar_tenants::api::{CreateEnvironment, Role};
use hangar_tenants::Phase;
use hangar_tests::runs::{deploy, task_instances, trigger};
use hangar_tests::{spawn_stack_with, wait_for_phase};

use super::start_agent_with;
use crate::crash::first_try_success;

/// One task that writes a log line every 50 ms for about 20 s.
const CHATTY: &str = r#"
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, default_args={"retries": 0})
def chatty():
    @task
    def talk():
        import logging
        import time

        log = logging.getLogger("chatty")
        for i in range(400):
            log.info("line %d %s", i, "x" * 200)
            time.sleep(0.05)
        log.info("all lines said")

    talk()


chatty()
"#;

/// A tmpfs mounted over a folder for the test's length (unmounted on drop, so a failed test
/// leaves no mount behind).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts `size` of tmpfs over `dir`, with the folder's own owner and mode.
    fn over(dir: &Path, size: &str) -> Self {
        let meta = std::fs::metadata(dir).unwrap();
        let options = format!(
            "size={size},mode={:o},uid={},gid={}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        );
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "hangar-test-logs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs over {} needs root: {status}",
            dir.display()
        );
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The agent, killed when the test ends, failed or not (a failed test leaves no agent behind
/// to rebuild what the stack's cleanup removed).
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fills the filesystem of `dir` to the last byte with one file, and returns it.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("failed to fill {}: {e}", dir.display()),
        }
    }
    // What a whole block did not fit into.
    while f.write(&[0]).is_ok_and(|n| n == 1) {}
    path
}

/// The log guard's note in a task log: how many lines (and bytes) it could not write.
fn dropped_lines(log: &str) -> (u32, u64) {
    let marker = "hangar: ";
    let tail = " could not be written from ";
    let note = log
        .lines()
        .filter_map(|l| l.split_once(marker).map(|(_, n)| n))
        .find(|n| n.contains(tail) && n.contains("the disk was full ([Errno 28]"))
        .unwrap_or_else(|| panic!("no note of the dropped lines in the task's log:\n{log}"));
    let mut words = note.split_whitespace();
    let lines = words.next().and_then(|w| w.parse().ok()).unwrap();
    let bytes = words
        .nth(2)
        .and_then(|w| w.trim_start_matches('(').parse().ok())
        .unwrap();
    (lines, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_disk_drops_log_lines_and_no_task() {
    let stack = spawn_stack_with(false).await.unwrap();
    let c = stack
        .app
        .tenant_with_role("kilo", Role::Editor)
        .await
        .unwrap();
    let (t, e) = ("kilo", "etl");
    let agent = Agent(start_agent_with(&stack, &[]));
    // No worker until a task is queued: the worker, and the task supervisors it forks, start
    // after the tmpfs is mounted and so see it (each process has a mount namespace of its
    // own, a copy of the agent's when it starts).
    let id = c
        .create_environment(
            t,
            &CreateEnvironment {
                name: e.into(),
                min_workers: Some(0),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .environment
        .id;
    wait_for_phase(&c, t, e, Phase::Available, Duration::from_secs(300)).await;
    deploy(&c, t, e, "chatty", CHATTY).await;

    let logs = stack.env_home(id).join("logs");
    let tmpfs = Tmpfs::over(&logs, "4m");
    let ballast = fill(&logs);
    assert_eq!(
        nix::sys::statvfs::statvfs(&logs)
            .unwrap()
            .blocks_available(),
        0
    );

    // The agent sees the full disk and says so.
    let start = Instant::now();
    let full = loop {
        let env = c.get_environment(t, e).await.unwrap();
        if let Some(full) = env.observed.and_then(|o| o.log_disk) {
            break full;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the full disk was not reported"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(full.folders, ["tasks"]);
    let series =
        r#"hangar_environment_log_disk_full{tenant="kilo",environment="etl",cell="local"}"#;
    assert!(
        stack
            .app
            .metrics()
            .await
            .lines()
            .any(|l| l == format!("{series} 1")),
        "{series} is not 1"
    );

    // The task starts and writes its log on the full disk for a while.
    let run = trigger(&c, t, e, "chatty").await;
    let start = Instant::now();
    while task_instances(&c, t, e, "chatty", &run).await[0]["state"] != "running" {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the task never ran: {:#?}",
            task_instances(&c, t, e, "chatty", &run).await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Long enough for the task to log more than its log file's buffer holds, even slowly.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        task_instances(&c, t, e, "chatty", &run).await[0]["state"],
        "running",
        "the task did not keep running on the full disk"
    );
    // Room again: the task ends well and its log says what it missed.
    std::fs::remove_file(&ballast).unwrap();
    first_try_success(&c, t, e, "chatty", &run).await;
    // The task's log as Hangar keeps it (copied to the bucket whenever it changes).
    let start = Instant::now();
    let log = loop {
        let log = c
            .task_log(t, e, "chatty", &run, "talk", Some(1))
            .await
            .unwrap_or_default();
        if log.contains("all lines said") {
            break log;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the task's whole log never reached the bucket:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (dropped, bytes) = dropped_lines(&log);
    eprintln!("dropped {dropped} lines ({bytes} bytes)");
    assert!(dropped > 0 && dropped < 400, "{dropped} lines dropped");
    assert!(log.contains("line 399 "), "{log}");

    // The agent saw the room come back.
    let start = Instant::now();
    while c
        .get_environment(t, e)
        .await
        .unwrap()
        .observed
        .and_then(|o| o.log_disk)
        .is_some()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the full disk is still reported"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        stack
            .app
            .metrics()
            .await
            .lines()
            .any(|l| l == format!("{series} 0")),
        "{series} is not 0"
    );
    let agent_log = std::fs::read_to_string(stack.dir.join("agent.log")).unwrap();
    for said in [
        "the disk under the environment's log folders is full",
        "the disk under the environment's log folders has room again",
    ] {
        assert!(agent_log.contains(said), "the agent's log lacks {said:?}");
    }

    drop(tmpfs);
    c.delete_environment(t, e).await.unwrap();
    wait_for_phase(&c, t, e, Phase::Deleted, Duration::from_secs(120)).await;
    drop(agent);
}
