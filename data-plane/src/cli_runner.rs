//! Runs one allow-listed Airflow CLI command (`hangar_tenants::airflow_cli`) where its
//! environment runs ([`Target`]). On the process runtime: a process of the environment's own
//! runtime, no shell, the environment's variables only, in its DAG folder, with a time limit
//! (the whole process group is killed when it passes) and a cap on the output kept (the rest
//! is read and dropped, so a chatty command never blocks on its pipe). On the kubernetes
//! runtime: a short-lived pod ([`crate::kubernetes::cli`]), whose one log holds stdout and
//! stderr merged, all reported as stdout. Connection listings have their passwords and extras
//! masked either way.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use hangar_tenants::api::AirflowCliResult;

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    /// Bytes kept of stdout and of stderr, each.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_output: 1 << 20,
        }
    }
}

/// What a run gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CliOutput {
    pub stdout: String,
    pub stderr: String,
    /// The exit code; `None` when it was killed (by the time limit or a signal).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Whether stdout or stderr was cut at the limit.
    pub truncated: bool,
}

/// Where an environment's CLI commands run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A process on this machine (process runtime).
    Process(ProcessTarget),
    /// A short-lived pod in the environment's namespace (kubernetes runtime).
    Pod(crate::kubernetes::cli::PodTarget),
}

/// A process runtime's environment: its runtime's `airflow`, the variables of its scheduler
/// (its configuration and secrets), its DAG folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessTarget {
    pub program: std::path::PathBuf,
    pub env: BTreeMap<String, String>,
    pub cwd: std::path::PathBuf,
    /// How the environment's processes are confined: its commands are too.
    pub confinement: crate::sandbox::Confinement,
}

/// Runs one command a cell's agent claimed (call `call`), checking it against the allow-list
/// again (the agent does not trust the control plane with a shell), and says what it gave.
pub async fn run_call(
    target: Option<&Target>,
    call: uuid::Uuid,
    args: Vec<String>,
    timeout: Duration,
) -> AirflowCliResult {
    let started = std::time::Instant::now();
    let refused = |message: String| AirflowCliResult {
        stdout: String::new(),
        stderr: message,
        exit_code: None,
        timed_out: false,
        truncated: false,
        duration_ms: 0,
    };
    let command = match hangar_tenants::airflow_cli::check(args) {
        Ok(c) => c,
        Err(e) => return refused(format!("refused by the agent: {e}")),
    };
    let Some(t) = target else {
        return refused("the environment is not running on this cell yet".to_owned());
    };
    let limits = Limits {
        timeout,
        ..Limits::default()
    };
    let output = match t {
        Target::Process(p) => run_process(p, &command.args, limits).await,
        Target::Pod(p) => p.run(call, &command.args, limits).await.map_err(|e| {
            format!(
                "failed to run the command in a pod: {e}{}",
                crate::agent::source_chain(&e)
            )
        }),
    };
    match output {
        Ok(o) => AirflowCliResult {
            stdout: if command.masks_connections && o.exit_code == Some(0) {
                mask_connections(&o.stdout)
            } else if command.masks_connections {
                String::new()
            } else {
                o.stdout
            },
            stderr: o.stderr,
            exit_code: o.exit_code,
            timed_out: o.timed_out,
            truncated: o.truncated,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        },
        Err(message) => refused(message),
    }
}

/// Runs `airflow args…` as a process of the environment's runtime, confined as its processes.
async fn run_process(
    t: &ProcessTarget,
    args: &[String],
    limits: Limits,
) -> Result<CliOutput, String> {
    let argv = t.confinement.wrap(
        &std::iter::once(t.program.display().to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>(),
    );
    let Some((program, args)) = argv.split_first() else {
        return Err("the environment has no program to run".to_owned());
    };
    run(Path::new(program), args, &t.env, &t.cwd, limits)
        .await
        .map_err(|e| format!("failed to run {}: {e}", t.program.display()))
}

/// Runs `program args…` with exactly `env` (plus the basics a process needs) in `cwd`.
pub async fn run(
    program: &Path,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    limits: Limits,
) -> std::io::Result<CliOutput> {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .envs(crate::supervisor::inherited_env())
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let group = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .map(Pid::from_raw);
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(std::io::Error::other(
            "the command's output pipes are missing",
        ));
    };
    let reading = async {
        tokio::join!(
            read_capped(out, limits.max_output),
            read_capped(err, limits.max_output)
        )
    };
    tokio::pin!(reading);
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let read = tokio::time::timeout_at(deadline, &mut reading).await.ok();
    let status = match read {
        Some(_) => tokio::time::timeout_at(deadline, child.wait()).await.ok(),
        None => None,
    };
    let timed_out = status.is_none();
    // Whatever the command left in its group (say, a task it started) goes with it; after the
    // time limit, the command too, which closes its pipes: what it wrote until then is kept.
    if let Some(g) = group {
        let _ = killpg(g, Signal::SIGKILL);
    }
    let (stdout, stderr) = match read {
        Some(r) => r,
        None => {
            let _ = child.wait().await;
            // A process that left the group may hold the pipes open: not waited for long.
            tokio::time::timeout(Duration::from_secs(2), &mut reading)
                .await
                .unwrap_or((Ok((Vec::new(), false)), Ok((Vec::new(), false))))
        }
    };
    let (stdout, stderr) = (stdout?, stderr?);
    Ok(CliOutput {
        stdout: String::from_utf8_lossy(&stdout.0).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.0).into_owned(),
        exit_code: status
            .transpose()?
            .and_then(|s| if s.signal().is_some() { None } else { s.code() }),
        timed_out,
        truncated: stdout.1 || stderr.1,
    })
}

/// Reads `r` to its end, keeping the first `cap` bytes; whether anything was dropped.
async fn read_capped(
    mut r: impl AsyncRead + Unpin,
    cap: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut dropped = false;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, dropped));
        }
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
        dropped |= n > room;
    }
}

/// `airflow connections list --output json` with every connection's `password` and `extra`
/// replaced by `***`; anything that is not such a listing is withheld whole.
pub fn mask_connections(stdout: &str) -> String {
    let Ok(serde_json::Value::Array(mut conns)) = serde_json::from_str(stdout.trim()) else {
        return "(withheld: not a JSON connection listing; run with --output json)".to_owned();
    };
    for c in &mut conns {
        if let Some(obj) = c.as_object_mut() {
            for key in ["password", "extra", "extra_dejson"] {
                if let Some(v) = obj.get_mut(key) {
                    if !(v.is_null() || v.as_str() == Some("")) {
                        *v = serde_json::Value::String("***".to_owned());
                    }
                }
            }
            if let Some(uri) = obj.get_mut("get_uri") {
                *uri = serde_json::Value::String("***".to_owned());
            }
        }
    }
    serde_json::to_string_pretty(&conns).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn sh(script: &str) -> (std::path::PathBuf, Vec<String>) {
        ("sh".into(), vec!["-c".to_owned(), script.to_owned()])
    }

    #[tokio::test]
    async fn output_exit_code_env_and_folder_are_those_of_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let (p, a) = sh("echo out; echo err >&2; echo $MARK; pwd; echo ${SECRET:-none}; exit 3");
        let env = BTreeMap::from([("MARK".to_owned(), "m1".to_owned())]);
        let o = run(&p, &a, &env, dir.path(), Limits::default())
            .await
            .unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        assert_eq!(
            o.stdout,
            format!("out\nm1\n{}\nnone\n", cwd.display()),
            "only the given variables"
        );
        assert_eq!((o.stderr.as_str(), o.exit_code), ("err\n", Some(3)));
        assert!(!o.timed_out && !o.truncated);
    }

    #[tokio::test]
    async fn the_time_limit_kills_the_whole_group_and_keeps_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let (p, a) = sh(&format!(
            "echo started; echo slow >&2; sleep 60 & echo $! > {}; wait",
            pidfile.display()
        ));
        let limits = Limits {
            timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        let start = std::time::Instant::now();
        let o = run(&p, &a, &BTreeMap::new(), dir.path(), limits)
            .await
            .unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(o.timed_out && o.exit_code.is_none(), "{o:?}");
        assert_eq!(
            (o.stdout.as_str(), o.stderr.as_str()),
            ("started\n", "slow\n"),
            "what it wrote before the limit is kept"
        );
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next();
        assert!(
            matches!(state, None | Some("Z")),
            "the background sleep was killed too: {stat}"
        );
    }

    #[tokio::test]
    async fn output_beyond_the_cap_is_dropped_without_blocking_the_command() {
        let dir = tempfile::tempdir().unwrap();
        // 4 MB through a 64 KiB pipe: the command only finishes if the pipe keeps draining.
        let (p, a) = sh("head -c 4000000 /dev/zero | tr '\\0' x; echo done >&2");
        let limits = Limits {
            max_output: 1000,
            ..Limits::default()
        };
        let o = run(&p, &a, &BTreeMap::new(), dir.path(), limits)
            .await
            .unwrap();
        assert_eq!(o.stdout.len(), 1000);
        assert_eq!((o.stderr.as_str(), o.exit_code), ("done\n", Some(0)));
        assert!(o.truncated && !o.timed_out);
    }

    #[tokio::test]
    async fn allow_listed_commands_run_in_a_real_airflow_runtime() {
        use crate::runtime::python::RuntimeCache;
        let root = std::env::var_os("HANGAR_TEST_RUNTIME_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("hangar-runtime-test-cache"));
        let rt = RuntimeCache::new(&root, Path::new("uv"))
            .ensure("3.3.2", "")
            .await
            .unwrap();
        let home = tempfile::tempdir().unwrap();
        let env = BTreeMap::from([
            ("AIRFLOW_HOME".to_owned(), home.path().display().to_string()),
            ("AIRFLOW__CORE__PARALLELISM".to_owned(), "17".to_owned()),
        ]);
        for (args, want) in [
            (vec!["version"], "3.3.2"),
            (vec!["config", "get-value", "core", "parallelism"], "17"),
        ] {
            let cmd =
                hangar_tenants::airflow_cli::check(args.iter().map(|a| (*a).to_owned()).collect())
                    .unwrap();
            let o = run(
                &rt.bin("airflow"),
                &cmd.args,
                &env,
                home.path(),
                Limits::default(),
            )
            .await
            .unwrap();
            assert_eq!((o.stdout.trim(), o.exit_code), (want, Some(0)), "{o:?}");
        }
    }

    #[test]
    fn connection_secrets_are_masked() {
        let listed = r#"[{"conn_id": "pg", "conn_type": "postgres", "host": "db", "login": "u",
            "password": "hunter2", "extra": "{\"token\": \"t\"}", "get_uri": "postgres://u:hunter2@db"},
            {"conn_id": "none", "password": null, "extra": ""}]"#;
        let masked = mask_connections(listed);
        assert!(
            !masked.contains("hunter2") && !masked.contains("\"t\""),
            "{masked}"
        );
        assert!(masked.contains("\"host\": \"db\""), "{masked}");
        assert!(masked.contains("\"password\": null"), "{masked}");
        assert!(mask_connections("pg  postgres  hunter2").starts_with("(withheld"));
    }
}
