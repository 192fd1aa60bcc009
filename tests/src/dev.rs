//! `hangar dev` as a user runs it, for the tests that need the whole single-machine product:
//! started on a data directory of the test's own, read from its `dev.json`, stopped with
//! Ctrl-C.

use std::path::Path;
use std::time::{Duration, Instant};

use hangar_client::Client;
use serde_json::Value;

use crate::hangar_bin;

/// `hangar dev` running on a data directory.
pub struct Dev {
    pub child: std::process::Child,
    /// The platform admin's client.
    pub admin: Client,
    /// The API's address.
    pub url: String,
    pub admin_token: String,
}

/// Starts `hangar dev` on `dir` (its log next to it, `dir.log`) with its environments' cgroups
/// under `cgroup_parent`, and waits for its dev.json.
#[allow(clippy::panic, reason = "a test helper")]
pub async fn start(dir: &Path, cgroup_parent: &str) -> Dev {
    let _ = std::fs::remove_file(dir.join("dev.json"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.with_extension("log"))
        .unwrap_or_else(|e| panic!("opening the log: {e}"));
    let child = std::process::Command::new(hangar_bin())
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("HANGAR_CGROUP_PARENT", cgroup_parent)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting hangar dev: {e}"));
    let start = Instant::now();
    let dev: Value = loop {
        if let Some(v) = std::fs::read(dir.join("dev.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "hangar dev did not start; see {}",
            dir.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let url = dev["url"].as_str().unwrap_or_default().to_owned();
    let admin_token = dev["admin_token"].as_str().unwrap_or_default().to_owned();
    let admin = crate::client(&url, Some(&admin_token));
    Dev {
        child,
        admin,
        url,
        admin_token,
    }
}

/// The URL of the control plane's database in `hangar dev`'s private Postgres (read from its
/// data directory: the password file and the server's pid file, whose fourth line is the port).
pub fn database_url(dir: &Path) -> Option<String> {
    let password = std::fs::read_to_string(dir.join("postgres/password")).ok()?;
    let pid = std::fs::read_to_string(dir.join("postgres/data/postmaster.pid")).ok()?;
    let port = pid.lines().nth(3)?.trim();
    Some(format!(
        "postgres://{}:{}@127.0.0.1:{port}/hangar",
        hangar_data_plane::embedded::postgres::SUPERUSER,
        password.trim()
    ))
}

/// Ctrl-C, as a user would; returns once `hangar dev` has exited.
#[allow(clippy::panic, reason = "a test helper")]
pub fn interrupt(mut child: std::process::Child) -> std::process::ExitStatus {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    child
        .wait()
        .unwrap_or_else(|e| panic!("waiting for hangar dev: {e}"))
}
