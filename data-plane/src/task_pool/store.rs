//! An environment's tasks on disk, so an agent restart loses none: `<home>/tasks/` (the agent's,
//! `root:<environment group> 0750`) holds per task `<stem>.task` (its key and workload, the
//! agent's alone), once started `<stem>.json` (the workload its process reads, the
//! environment user's `0600`) and `<stem>.pid` (the process: pid and kernel start time), and
//! `<stem>.ran`, made by the process itself once its pid is on disk, just before it runs the
//! task (so a new agent tells a task that ran from one whose agent died while starting it).
//! Every file is written to a temporary name and renamed, and the folder is the agent's, so the
//! environment can neither plant a link in it nor see a half-written task.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::supervisor::Identity;

#[derive(Debug, thiserror::Error)]
#[error("failed to write {path}")]
pub struct StoreError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// What `<stem>.task` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    pub workload: String,
    /// Seconds since the epoch.
    pub submitted: i64,
}

/// A task found on disk by a new agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub record: Record,
    /// Its process, if one was started (alive or not).
    pub process: Option<Identity>,
    /// A new workload of the same key waiting for that process to end (`<stem>.next`).
    pub next: Option<Record>,
    /// Whether that process went past its gate and ran the task (`<stem>.ran`).
    pub ran: bool,
}

/// The folder of one environment's tasks.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    owner: Option<(u32, u32)>,
}

/// The file stem of a key: its digest, so no key reaches a path.
pub fn stem(key: &str) -> String {
    crate::supervisor::short_hex(&Sha256::digest(key.as_bytes()))
}

fn err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError {
        path: path.to_owned(),
        source,
    }
}

impl Store {
    /// Makes `<home>/tasks` (the agent's; readable by the environment's group).
    pub fn open(home: &Path, owner: Option<(u32, u32)>) -> Result<Self, StoreError> {
        let dir = home.join("tasks");
        std::fs::create_dir_all(&dir).map_err(err(&dir))?;
        crate::sandbox::own(&dir, owner.map(|(_, gid)| (0, gid)), 0o750).map_err(|e| {
            StoreError {
                path: dir.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        Ok(Self { dir, owner })
    }

    fn path(&self, key: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", stem(key)))
    }

    /// The workload file a task's process reads.
    pub fn workload_path(&self, key: &str) -> PathBuf {
        self.path(key, "json")
    }

    /// Writes `contents` to `path` through a temporary file (never following a link), with
    /// `mode` and, if given, `owner`.
    fn write(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), StoreError> {
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(err(&tmp))?;
        f.write_all(contents).map_err(err(&tmp))?;
        f.sync_all().map_err(err(&tmp))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(err(&tmp))?;
        }
        drop(f);
        std::fs::rename(&tmp, path).map_err(err(path))
    }

    /// Records a submitted task before the submit is answered.
    pub fn save(&self, record: &Record) -> Result<(), StoreError> {
        let path = self.path(&record.key, "task");
        let json = serde_json::to_vec(record).unwrap_or_default();
        self.write(&path, &json, 0o600, None)
    }

    /// Records a new workload of a key whose process still runs (a resumed deferred task).
    pub fn save_next(&self, record: &Record) -> Result<(), StoreError> {
        let path = self.path(&record.key, "next");
        let json = serde_json::to_vec(record).unwrap_or_default();
        self.write(&path, &json, 0o600, None)
    }

    /// Writes the workload file the task's process reads (the environment user's alone).
    pub fn write_workload(&self, record: &Record) -> Result<PathBuf, StoreError> {
        let path = self.workload_path(&record.key);
        self.write(&path, record.workload.as_bytes(), 0o600, self.owner)?;
        Ok(path)
    }

    /// Where a task's process marks that it runs the task.
    pub fn ran_path(&self, key: &str) -> PathBuf {
        self.path(key, "ran")
    }

    /// Whether a task's process went past its gate and ran the task.
    pub fn ran(&self, key: &str) -> bool {
        self.ran_path(key).exists()
    }

    /// Forgets a process that never ran the task (its agent died while starting it), so the
    /// task is started again.
    pub fn forget_process(&self, key: &str) {
        for ext in ["pid", "ran"] {
            let _ = std::fs::remove_file(self.path(key, ext));
        }
    }

    /// Records a task's process.
    pub fn save_process(&self, key: &str, id: Identity) -> Result<(), StoreError> {
        let path = self.path(key, "pid");
        self.write(
            &path,
            format!("{} {}\n", id.pid, id.start_ticks).as_bytes(),
            0o600,
            None,
        )
    }

    /// Forgets a task (it ended, or was revoked).
    pub fn remove(&self, key: &str) {
        for ext in ["json", "pid", "ran", "task", "next"] {
            let _ = std::fs::remove_file(self.path(key, ext));
        }
    }

    /// Every task a previous agent left, in submit order.
    pub fn load(&self) -> Vec<Found> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<Found> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "task"))
            .filter_map(|e| {
                let record: Record = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                let process = std::fs::read_to_string(self.path(&record.key, "pid"))
                    .ok()
                    .and_then(|t| {
                        let mut p = t.split_whitespace();
                        Some(Identity {
                            pid: p.next()?.parse().ok()?,
                            start_ticks: p.next()?.parse().ok()?,
                        })
                    });
                let next = std::fs::read(self.path(&record.key, "next"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let ran = self.ran(&record.key);
                Some(Found {
                    record,
                    process,
                    next,
                    ran,
                })
            })
            .collect();
        found.sort_by(|a, b| {
            (a.record.submitted, &a.record.key).cmp(&(b.record.submitted, &b.record.key))
        });
        found
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tasks_survive_in_their_folder_until_removed() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path(), None).unwrap();
        let a = Record {
            key: "a".into(),
            workload: "{}".into(),
            submitted: 2,
        };
        let b = Record {
            key: "b".into(),
            workload: "{\"x\":1}".into(),
            submitted: 1,
        };
        store.save(&a).unwrap();
        store.save(&b).unwrap();
        let id = Identity {
            pid: 42,
            start_ticks: 7,
        };
        store.save_process("a", id).unwrap();
        std::fs::write(store.ran_path("a"), "").unwrap();
        let path = store.write_workload(&b).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"x\":1}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let found = Store::open(home.path(), None).unwrap().load();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].record, b);
        assert_eq!(found[0].process, None);
        assert_eq!(found[0].next, None);
        assert!(!found[0].ran);
        assert!(found[1].ran);
        assert_eq!(found[1].record, a);
        assert_eq!(found[1].process, Some(id));
        store.remove("a");
        store.remove("b");
        assert!(store.load().is_empty());
        assert_eq!(
            std::fs::read_dir(home.path().join("tasks"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_planted_link_is_never_followed() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path(), None).unwrap();
        let victim = home.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let r = Record {
            key: "k".into(),
            workload: "{}".into(),
            submitted: 0,
        };
        // A link at the temporary name is replaced, not written through.
        std::os::unix::fs::symlink(&victim, store.workload_path("k").with_extension("tmp"))
            .unwrap();
        store.write_workload(&r).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    }
}
