//! Python runtimes: a virtualenv per (Airflow version, requirements), built with `uv` and
//! shared by every environment with the same inputs. Requirements are resolved together with
//! Airflow itself, so a set that conflicts with it, or does not exist, fails the build with
//! uv's own message and no environment's running runtime is touched.
//!
//! A virtualenv holds absolute paths (interpreter links, script shebangs), so it cannot be built
//! elsewhere and renamed into place. It is built at its final path instead, under a per-key lock,
//! and a marker file written last says it is complete; a folder without the marker is a build
//! that was interrupted, and is removed and built again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::process::Command;
use tokio::sync::Mutex;

const COMPLETE: &str = ".hangar-complete";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("failed to prepare {path}")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to run uv ({uv}): is it installed? (scripts/bootstrap installs it)")]
    Uv {
        uv: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to create the virtualenv of runtime {key}: {message}")]
    Venv { key: String, message: String },
    /// The requirements do not resolve (with Airflow): uv's message, for the tenant.
    #[error("the requirements do not resolve: {message}")]
    Resolve { key: String, message: String },
}

/// The normalised requirements: trimmed lines, without blank lines and comments. Order is kept
/// (pip options such as `--index-url` may depend on it).
pub fn normalise(requirements: &str) -> String {
    requirements
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The cache key of a runtime: a hash of the Airflow version and the normalised requirements.
pub fn runtime_key(airflow_version: &str, requirements: &str) -> String {
    let mut h = Sha256::new();
    h.update(airflow_version.as_bytes());
    h.update([0]);
    h.update(normalise(requirements).as_bytes());
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A complete runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub key: String,
    pub dir: PathBuf,
}

impl Runtime {
    /// A program of the runtime (`airflow`, `python`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
}

/// The runtimes of this machine, under one folder.
#[derive(Debug)]
pub struct RuntimeCache {
    root: PathBuf,
    uv: PathBuf,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

fn files(path: &Path) -> impl Fn(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Files {
        path: path.to_owned(),
        source,
    }
}

/// The last lines of a tool's error output, which carry its explanation.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

impl RuntimeCache {
    /// `uv` is the uv program (a path, or a name looked up on PATH).
    pub fn new(root: &Path, uv: &Path) -> Self {
        Self {
            root: root.to_owned(),
            uv: uv.to_owned(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    async fn lock_for(&self, key: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .await
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// The runtime for these inputs, built if needed (a cache hit returns at once).
    pub async fn ensure(
        &self,
        airflow_version: &str,
        requirements: &str,
    ) -> Result<Runtime, RuntimeError> {
        let key = runtime_key(airflow_version, requirements);
        let dir = self.root.join(&key);
        let runtime = Runtime {
            key: key.clone(),
            dir: dir.clone(),
        };
        if dir.join(COMPLETE).exists() {
            return Ok(runtime);
        }
        let lock = self.lock_for(&key).await;
        let _held = lock.lock().await;
        if dir.join(COMPLETE).exists() {
            return Ok(runtime);
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(files(&dir))?;
        }
        std::fs::create_dir_all(&self.root).map_err(files(&self.root))?;
        let built = self.build(&runtime, airflow_version, requirements).await;
        if built.is_err() && dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        built.map(|()| runtime)
    }

    async fn build(
        &self,
        rt: &Runtime,
        airflow_version: &str,
        requirements: &str,
    ) -> Result<(), RuntimeError> {
        let uv_err = |source| RuntimeError::Uv {
            uv: self.uv.display().to_string(),
            source,
        };
        let out = Command::new(&self.uv)
            .args(["venv", "--quiet", "--seed"])
            .arg(&rt.dir)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(uv_err)?;
        if !out.status.success() {
            return Err(RuntimeError::Venv {
                key: rt.key.clone(),
                message: tail(&out.stderr),
            });
        }
        let reqs = rt.dir.join("requirements.txt");
        std::fs::write(&reqs, format!("{}\n", normalise(requirements))).map_err(files(&reqs))?;
        let airflow = format!("apache-airflow[celery,postgres,redis]=={airflow_version}");
        let out = Command::new(&self.uv)
            .args([
                "pip",
                "install",
                "--quiet",
                "--compile-bytecode",
                "--python",
            ])
            .arg(rt.bin("python"))
            .arg(&airflow)
            .arg("-r")
            .arg(&reqs)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(uv_err)?;
        if !out.status.success() {
            return Err(RuntimeError::Resolve {
                key: rt.key.clone(),
                message: tail(&out.stderr),
            });
        }
        let marker = rt.dir.join(COMPLETE);
        std::fs::write(&marker, format!("{airflow}\n")).map_err(files(&marker))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn keys_ignore_comments_blank_lines_and_spacing_but_not_content() {
        let a = runtime_key("3.3.2", "pandas==2.2.0\n# note\n\n  requests  \n");
        assert_eq!(a, runtime_key("3.3.2", "pandas==2.2.0\nrequests"));
        assert_ne!(a, runtime_key("3.3.2", "pandas==2.2.1\nrequests"));
        assert_ne!(a, runtime_key("3.3.3", "pandas==2.2.0\nrequests"));
        assert_eq!(a.len(), 16);
    }

    /// One cache for the tests of this process, so Airflow is installed once.
    fn cache() -> RuntimeCache {
        let root = std::env::var("HANGAR_TEST_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir().join("hangar-runtime-test-cache"));
        RuntimeCache::new(&root, Path::new("uv"))
    }

    #[tokio::test]
    async fn builds_airflow_once_and_serves_it_from_the_cache() {
        let c = cache();
        let rt = c.ensure("3.3.2", "").await.unwrap();
        let home = tempfile::tempdir().unwrap();
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            Command::new(rt.bin("airflow"))
                .arg("version")
                .env("AIRFLOW_HOME", home.path())
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3.3.2");
        let t = Instant::now();
        assert_eq!(c.ensure("3.3.2", "# same inputs\n").await.unwrap(), rt);
        assert!(t.elapsed() < Duration::from_millis(100), "a cache hit");
    }

    #[tokio::test]
    async fn requirements_that_do_not_resolve_fail_with_uvs_message_and_leave_nothing() {
        let c = cache();
        let err = c
            .ensure("3.3.2", "no-such-package-hangar-test==0\n")
            .await
            .unwrap_err();
        match &err {
            RuntimeError::Resolve { key, message } => {
                assert!(message.contains("no-such-package-hangar-test"), "{message}");
                assert!(!c.root.join(key).exists());
            }
            other => panic!("expected a resolution error, got {other:?}"),
        }
    }
}
