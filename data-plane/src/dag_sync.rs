//! DAG sync: mirrors an environment's `dags/` prefix of the platform bucket into its dags folder.
//!
//! - **Cheap when nothing changed**: one listing (paged by the store) compared with a manifest of
//!   each object's ETag, size and modification time; nothing is downloaded.
//! - **Never half-written**: the dags folder (`<home>/dags`) is a symlink to a generation folder
//!   (`<home>/dags.d/<n>`). A change builds the next generation beside it (unchanged files
//!   hard-linked from the current one, changed ones downloaded) and switches the symlink with one
//!   `rename`, so the dag-processor sees the old tree or the new one, never a mix. The previous
//!   generation is kept one more round for parses still reading it.
//! - **Deletions propagate**: a file gone from the bucket is not in the next generation.
//! - **`.airflowignore`** (Airflow's default glob syntax, at any level) is synced and applied:
//!   ignored files are not downloaded. With `core.dag_ignore_file_syntax = regexp` every file is
//!   synced and Airflow applies the file itself.
//! - **Safe keys only**: a key that is not a plain relative path (`..`, absolute, empty segments,
//!   control characters; see [`DagPath`]) is refused, reported and not written; symlinks cannot
//!   be created by a download.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use hangar_tenants::dag_path::{DagPath, UPLOAD_PREFIX};
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};

use crate::bucket::{Bucket, BucketError};

/// The folder of a synced folder's generations (`<home>/dags.d` for `<home>/dags`).
pub fn generations_of(folder: &Path) -> PathBuf {
    let mut name = folder.as_os_str().to_owned();
    name.push(".d");
    PathBuf::from(name)
}

/// Asks an environment's dag-processor to parse these synced files next (Airflow's priority
/// parsing requests, as its `parseDagFile` API makes them), so a new or changed DAG shows up in
/// seconds, not at the next periodic scan. `database_url` is the environment's own database,
/// as its own role.
pub async fn request_parse(
    database_url: &secrecy::SecretString,
    files: &[String],
) -> Result<(), sqlx::Error> {
    use secrecy::ExposeSecret;
    use sqlx::Connection;
    let dags: Vec<&String> = files
        .iter()
        .filter(|f| f.ends_with(".py") || f.ends_with(".zip"))
        .collect();
    if dags.is_empty() {
        return Ok(());
    }
    let mut conn = sqlx::PgConnection::connect(database_url.expose_secret()).await?;
    for f in dags {
        sqlx::query(
            "INSERT INTO dag_priority_parsing_request (id, bundle_name, relative_fileloc)
             VALUES (md5('dags-folder:' || $1), 'dags-folder', $1)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(f)
        .execute(&mut conn)
        .await?;
    }
    conn.close().await
}

/// Downloads in flight at once.
const PARALLEL_DOWNLOADS: usize = 8;
const IGNORE_FILE: &str = ".airflowignore";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("failed to write {path}")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn files(path: &Path) -> impl Fn(std::io::Error) -> SyncError + '_ {
    move |source| SyncError::Files {
        path: path.to_owned(),
        source,
    }
}

/// What the sync knows of an object, to tell whether it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    e_tag: Option<String>,
    size: u64,
    modified_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    generation: u64,
    files: BTreeMap<String, Stamp>,
}

/// One round's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Objects listed under the prefix.
    pub listed: usize,
    /// Files downloaded (new or changed).
    pub downloaded: Vec<String>,
    /// Files removed because they left the bucket (or became ignored).
    pub removed: Vec<String>,
    /// Keys refused, with the reason.
    pub refused: Vec<(String, String)>,
    /// Files left out by `.airflowignore`.
    pub ignored: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Whether the dags folder switched to a new generation.
    pub switched: bool,
}

/// The sync of one environment's DAGs (or, the same way, its plugins).
#[derive(Debug)]
pub struct DagSync {
    bucket: Bucket,
    prefix: ObjectPath,
    home: PathBuf,
    /// The folder's name in `home` (`dags`, `plugins`).
    folder: String,
    manifest: Manifest,
    /// Apply `.airflowignore` files (Airflow's glob syntax).
    apply_ignore: bool,
}

impl DagSync {
    /// The sync of `tenant`/`env`'s DAGs into `<home>/dags`, resuming from the manifest a
    /// previous agent left.
    pub fn new(bucket: Bucket, tenant: &str, env: &str, home: &Path, apply_ignore: bool) -> Self {
        let prefix = bucket.dags_prefix(tenant, env);
        Self::folder(bucket, prefix, home, "dags", apply_ignore)
    }

    /// The sync of `prefix` into `<home>/<folder>`.
    pub fn folder(
        bucket: Bucket,
        prefix: ObjectPath,
        home: &Path,
        folder: &str,
        apply_ignore: bool,
    ) -> Self {
        let manifest = std::fs::read(home.join(format!("{folder}-manifest.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            prefix,
            bucket,
            home: home.to_owned(),
            folder: folder.to_owned(),
            manifest,
            apply_ignore,
        }
    }

    /// The folder Airflow reads (a symlink to the current generation).
    pub fn dags_folder(&self) -> PathBuf {
        self.home.join(&self.folder)
    }

    /// Whether the current generation holds no file (also before the first sync).
    pub fn is_empty(&self) -> bool {
        self.manifest.files.is_empty()
    }

    /// The current generation's number (0 before the first sync): changes with the content.
    pub fn generation(&self) -> u64 {
        self.manifest.generation
    }

    fn generations(&self) -> PathBuf {
        generations_of(&self.dags_folder())
    }

    fn generation_dir(&self, n: u64) -> PathBuf {
        self.generations().join(n.to_string())
    }

    /// One round: list, compare, and if anything changed build and switch to a new generation.
    pub async fn sync(&mut self) -> Result<SyncOutcome, SyncError> {
        let listed = self.bucket.list(&self.prefix).await?;
        let mut out = SyncOutcome {
            listed: listed.len(),
            ..Default::default()
        };
        let mut wanted: BTreeMap<String, (Stamp, ObjectPath)> = BTreeMap::new();
        for meta in listed {
            let Some(rel) = Bucket::relative(&self.prefix, &meta.location) else {
                continue;
            };
            if rel
                .split('/')
                .any(|s| s == "__pycache__" || s.starts_with(UPLOAD_PREFIX))
            {
                continue;
            }
            if let Err(e) = DagPath::parse(&rel) {
                out.refused.push((rel, e.to_string()));
                continue;
            }
            let stamp = Stamp {
                e_tag: meta.e_tag.clone(),
                size: meta.size,
                modified_ms: meta.last_modified.timestamp_millis(),
            };
            wanted.insert(rel, (stamp, meta.location));
        }
        let current = self.current_generation();
        if self.apply_ignore {
            let ignored = self.ignored(&wanted, current.as_deref()).await?;
            out.ignored = ignored.len();
            wanted.retain(|rel, _| !ignored.contains(rel));
        }
        let changed: Vec<String> = wanted
            .iter()
            .filter(|(rel, (stamp, _))| self.manifest.files.get(*rel) != Some(stamp))
            .map(|(rel, _)| rel.clone())
            .collect();
        out.removed = self
            .manifest
            .files
            .keys()
            .filter(|rel| !wanted.contains_key(*rel))
            .cloned()
            .collect();
        if changed.is_empty() && out.removed.is_empty() && current.is_some() {
            return Ok(out);
        }

        let next = self.manifest.generation + 1;
        let dir = self.generation_dir(next);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(files(&dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(files(&dir))?;
        let changed_set: BTreeSet<&String> = changed.iter().collect();
        let mut to_download: Vec<(String, ObjectPath)> = Vec::new();
        for (rel, (_, location)) in &wanted {
            let linked = !changed_set.contains(rel)
                && current.as_ref().is_some_and(|cur| {
                    let target = dir.join(rel);
                    target
                        .parent()
                        .is_some_and(|p| std::fs::create_dir_all(p).is_ok())
                        && std::fs::hard_link(cur.join(rel), &target).is_ok()
                });
            if !linked {
                to_download.push((rel.clone(), location.clone()));
            }
        }
        let bucket = &self.bucket;
        let downloads: Vec<(String, u64)> = futures::stream::iter(to_download)
            .map(|(rel, location)| {
                let target = dir.join(&rel);
                async move {
                    let bytes = bucket.get(&location).await?;
                    if let Some(parent) = target.parent() {
                        tokio::fs::create_dir_all(parent)
                            .await
                            .map_err(files(parent))?;
                    }
                    tokio::fs::write(&target, &bytes)
                        .await
                        .map_err(files(&target))?;
                    Ok::<_, SyncError>((rel, bytes.len() as u64))
                }
            })
            .buffer_unordered(PARALLEL_DOWNLOADS)
            .try_collect()
            .await?;
        for (rel, n) in downloads {
            out.bytes += n;
            out.downloaded.push(rel);
        }
        out.downloaded.sort();

        self.switch_to(next)?;
        out.switched = true;
        self.manifest = Manifest {
            generation: next,
            files: wanted
                .into_iter()
                .map(|(rel, (stamp, _))| (rel, stamp))
                .collect(),
        };
        self.save_manifest()?;
        self.prune(next);
        Ok(out)
    }

    /// The generation folder the dags symlink points at, if it is one.
    fn current_generation(&self) -> Option<PathBuf> {
        let link = self.dags_folder();
        let target = std::fs::read_link(&link).ok()?;
        let dir = self.home.join(target);
        dir.is_dir().then_some(dir)
    }

    /// Points the dags folder at generation `n` with one rename.
    fn switch_to(&self, n: u64) -> Result<(), SyncError> {
        let link = self.dags_folder();
        // A dags folder from before generations (a plain directory) moves aside once.
        if link.is_dir() && std::fs::read_link(&link).is_err() {
            let aside = self.generations().join("before-sync");
            let _ = std::fs::remove_dir_all(&aside);
            std::fs::rename(&link, &aside).map_err(files(&link))?;
        }
        let next = self.home.join(format!(".{}-next", self.folder));
        let _ = std::fs::remove_file(&next);
        let relative = Path::new(&format!("{}.d", self.folder)).join(n.to_string());
        std::os::unix::fs::symlink(relative, &next).map_err(files(&next))?;
        std::fs::rename(&next, &link).map_err(files(&link))
    }

    /// Removes generations older than the previous one.
    fn prune(&self, current: u64) {
        let Ok(entries) = std::fs::read_dir(self.generations()) else {
            return;
        };
        for e in entries.flatten() {
            let keep = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n + 1 >= current);
            if !keep {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    fn save_manifest(&self) -> Result<(), SyncError> {
        let path = self.home.join(format!("{}-manifest.json", self.folder));
        let tmp = self
            .home
            .join(format!(".{}-manifest.json.tmp", self.folder));
        let json = serde_json::to_vec(&self.manifest).unwrap_or_default();
        std::fs::write(&tmp, json).map_err(files(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(files(&path))
    }

    /// The wanted files that `.airflowignore` files leave out. Ignore files are read from the
    /// current generation when unchanged, else from the bucket.
    async fn ignored(
        &self,
        wanted: &BTreeMap<String, (Stamp, ObjectPath)>,
        current: Option<&Path>,
    ) -> Result<BTreeSet<String>, SyncError> {
        let mut matchers = Vec::new();
        for (rel, (stamp, location)) in wanted {
            let Some(dir) = rel.strip_suffix(IGNORE_FILE) else {
                continue;
            };
            if !(dir.is_empty() || dir.ends_with('/')) {
                continue;
            }
            let unchanged = self.manifest.files.get(rel) == Some(stamp);
            let text = match current.filter(|_| unchanged) {
                Some(cur) => std::fs::read_to_string(cur.join(rel)).ok(),
                None => None,
            };
            let text = match text {
                Some(t) => t,
                None => String::from_utf8_lossy(&self.bucket.get(location).await?).into_owned(),
            };
            let mut b = ignore::gitignore::GitignoreBuilder::new(dir.trim_end_matches('/'));
            for line in text.lines() {
                // A bad pattern is Airflow's to report; the sync just does not apply it.
                let _ = b.add_line(None, line);
            }
            if let Ok(m) = b.build() {
                matchers.push((dir.to_owned(), m));
            }
        }
        Ok(wanted
            .keys()
            .filter(|rel| !rel.ends_with(IGNORE_FILE))
            .filter(|rel| {
                matchers.iter().any(|(dir, m)| {
                    rel.starts_with(dir.as_str())
                        && m.matched_path_or_any_parents(Path::new(rel.as_str()), false)
                            .is_ignore()
                })
            })
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        bucket: Bucket,
        home: PathBuf,
        root: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bucket");
        let bucket = Bucket::local(root.clone()).unwrap();
        let home = dir.path().join("env");
        std::fs::create_dir_all(&home).unwrap();
        Fixture {
            _dir: dir,
            bucket,
            home,
            root: root.join("tenants/t/environments/e/dags"),
        }
    }

    impl Fixture {
        async fn put(&self, rel: &str, text: &str) {
            let p = Bucket::child(&self.bucket.dags_prefix("t", "e"), rel);
            self.bucket.put(&p, text.to_owned().into()).await.unwrap();
        }
        fn sync(&self) -> DagSync {
            DagSync::new(self.bucket.clone(), "t", "e", &self.home, true)
        }
        fn read(&self, rel: &str) -> Option<String> {
            std::fs::read_to_string(self.home.join("dags").join(rel)).ok()
        }
    }

    /// A local bucket whose folder is gone (an unmounted volume) is an error, not an empty
    /// bucket: the DAGs stay, and the sync resumes when the folder is back.
    #[tokio::test]
    async fn a_bucket_folder_that_is_gone_keeps_the_last_good_dags() {
        let f = fixture();
        f.put("a.py", "a = 1\n").await;
        let mut s = f.sync();
        s.sync().await.unwrap();
        let bucket_dir = f._dir.path().join("bucket");
        let away = f._dir.path().join("bucket-away");
        std::fs::rename(&bucket_dir, &away).unwrap();
        let e = s.sync().await.unwrap_err();
        assert!(e.to_string().contains("is gone"), "{e}");
        assert_eq!(f.read("a.py").as_deref(), Some("a = 1\n"));
        assert_eq!(s.generation(), 1);

        std::fs::rename(&away, &bucket_dir).unwrap();
        f.put("b.py", "b = 1\n").await;
        let back = s.sync().await.unwrap();
        assert_eq!(back.downloaded, ["b.py"]);
        assert_eq!(f.read("a.py").as_deref(), Some("a = 1\n"));
    }

    #[tokio::test]
    async fn changes_arrive_in_a_new_generation_and_only_changed_files_are_downloaded() {
        let f = fixture();
        f.put("a.py", "a = 1\n").await;
        f.put("team/b.py", "b = 1\n").await;
        let mut s = f.sync();
        let first = s.sync().await.unwrap();
        assert_eq!(first.downloaded, ["a.py", "team/b.py"]);
        assert!(first.switched);
        assert_eq!(f.read("team/b.py").as_deref(), Some("b = 1\n"));
        let gen1 = std::fs::read_link(f.home.join("dags")).unwrap();

        // Nothing changed: one listing, nothing downloaded, no switch.
        let idle = s.sync().await.unwrap();
        assert_eq!((idle.listed, idle.bytes, idle.switched), (2, 0, false));

        // One change, one deletion: only that file is fetched; the old tree stays whole.
        let old_a = std::fs::read_to_string(f.home.join(&gen1).join("a.py")).unwrap();
        f.put("a.py", "a = 2\n").await;
        f.bucket
            .delete(&Bucket::child(&f.bucket.dags_prefix("t", "e"), "team/b.py"))
            .await
            .unwrap();
        let second = s.sync().await.unwrap();
        assert_eq!(second.downloaded, ["a.py"]);
        assert_eq!(second.removed, ["team/b.py"]);
        assert_eq!(f.read("a.py").as_deref(), Some("a = 2\n"));
        assert_eq!(f.read("team/b.py"), None);
        assert_ne!(std::fs::read_link(f.home.join("dags")).unwrap(), gen1);
        assert_eq!(old_a, "a = 1\n", "the previous generation was not touched");

        // A restarted agent resumes from the manifest: nothing to do.
        let mut again = f.sync();
        assert!(!again.sync().await.unwrap().switched);
    }

    #[tokio::test]
    async fn keys_that_would_escape_are_refused_and_ignored_files_are_left_out() {
        let f = fixture();
        f.put("ok.py", "x = 1\n").await;
        f.put(".airflowignore", "scratch/\n*_test.py\n").await;
        f.put("scratch/wip.py", "y\n").await;
        f.put("etl_test.py", "z\n").await;
        f.put("sub/.airflowignore", "local.py\n").await;
        f.put("sub/local.py", "w\n").await;
        f.put("sub/kept.py", "v\n").await;
        // A key Windows tools would read as `..\x.py`, written straight into the store's
        // folder as another tool could.
        std::fs::write(f.root.join("..\\x.py"), "bad").unwrap();
        let out = f.sync().sync().await.unwrap();
        assert_eq!(
            out.downloaded,
            [
                ".airflowignore",
                "ok.py",
                "sub/.airflowignore",
                "sub/kept.py"
            ]
        );
        assert_eq!(out.ignored, 3);
        assert!(f.read("scratch/wip.py").is_none());
        assert!(
            out.refused.iter().any(|(k, _)| k.contains("x.py")),
            "{:?}",
            out.refused
        );
        assert!(!f.home.join("x.py").exists() && !f.home.parent().unwrap().join("x.py").exists());
    }

    #[tokio::test]
    async fn a_plain_dags_folder_from_before_moves_aside() {
        let f = fixture();
        std::fs::create_dir_all(f.home.join("dags")).unwrap();
        std::fs::write(f.home.join("dags/old.py"), "old").unwrap();
        f.put("new.py", "new").await;
        f.sync().sync().await.unwrap();
        assert!(std::fs::read_link(f.home.join("dags")).is_ok());
        assert_eq!(f.read("new.py").as_deref(), Some("new"));
        assert_eq!(f.read("old.py"), None);
    }
}
