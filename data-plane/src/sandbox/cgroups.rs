//! Resource limits per environment with cgroups: memory, CPU weight and a process count, so a
//! task that allocates without bound or forks without end is stopped inside its own
//! environment (the kernel's OOM killer and `pids.max` act within the group) while the others
//! keep running.
//!
//! Both versions are supported: the unified hierarchy (v2, `/sys/fs/cgroup/cgroup.controllers`
//! lists `memory`, `cpu` and `pids`), or the v1 `memory`, `cpu` and `pids` hierarchies under
//! `/sys/fs/cgroup/<controller>`. Only these three controllers are touched, by writing their
//! files directly: an environment's group is `<hierarchy>/<parent>/<environment id>`. A process
//! joins its group itself, before it becomes the environment's program
//! ([`super::exec`]), so nothing it forks can start outside.

use std::path::{Path, PathBuf};

use uuid::Uuid;

pub(crate) const ROOT: &str = "/sys/fs/cgroup";
const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// What an environment may use, from its class and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    /// Relative CPU weight, 1–10000 (cgroup v2's scale; v1 `cpu.shares` is ~10× it).
    pub cpu_weight: u32,
    /// Most processes and threads at once.
    pub pids: u32,
}

impl Limits {
    /// An environment's limits: its fixed components (api-server, schedulers, dag-processor,
    /// triggerer: 1.5 GiB together, measured idle at about 0.9 GiB) plus, for each worker it
    /// may run, one worker's memory of its class; CPU weight by the class's worker CPU.
    pub fn for_environment(spec: &hangar_tenants::EnvironmentSpec) -> Self {
        let class = spec.environment_class;
        let workers = u64::from(spec.max_workers.max(spec.min_workers).max(1));
        let memory_mib = 1536 + workers * u64::from(class.worker_memory_mib());
        Self {
            memory_bytes: memory_mib << 20,
            cpu_weight: (class.worker_cpu_millis() / 10).clamp(1, 10_000),
            pids: 1024 + 512 * u32::try_from(workers).unwrap_or(u32::MAX / 1024),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn label(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The cgroups this machine offers for environments, under one parent group of the cell.
#[derive(Debug, Clone)]
pub struct Cgroups {
    version: Version,
    /// `<hierarchy>/<parent>` for each hierarchy used (one for v2, three for v1).
    parents: Vec<PathBuf>,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        source,
    })
}

impl Cgroups {
    /// Finds the hierarchies and makes the cell's parent group in each (`parent`, e.g.
    /// `hangar`); `Err` says why limits cannot be enforced here.
    pub fn detect(parent: &str) -> Result<Self, String> {
        Self::detect_at(Path::new(ROOT), parent)
    }

    fn detect_at(root: &Path, parent: &str) -> Result<Self, String> {
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok();
        let (version, parents) = match controllers {
            Some(list) => {
                let have: Vec<&str> = list.split_whitespace().collect();
                let missing: Vec<&str> = V1_CONTROLLERS
                    .into_iter()
                    .filter(|c| !have.contains(c))
                    .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "cgroup v2 lacks the {} controller(s)",
                        missing.join(", ")
                    ));
                }
                (Version::V2, vec![root.join(parent)])
            }
            None => {
                let mut parents = Vec::new();
                for c in V1_CONTROLLERS {
                    let h = root.join(c);
                    if !h.join("cgroup.procs").is_file() {
                        return Err(format!(
                            "no cgroup v2 and no v1 {c} hierarchy at {}",
                            h.display()
                        ));
                    }
                    parents.push(h.join(parent));
                }
                (Version::V1, parents)
            }
        };
        let enable = |dir: &Path| {
            if version == Version::V2 {
                write(&dir.join("cgroup.subtree_control"), "+memory +cpu +pids")
                    .map_err(|e| format!("{e}{}", crate::agent::source_chain(&e)))?;
            }
            Ok::<_, String>(())
        };
        enable(root)?;
        for p in &parents {
            std::fs::create_dir_all(p)
                .map_err(|e| format!("failed to create {}: {e}", p.display()))?;
            enable(p)?;
        }
        Ok(Self { version, parents })
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The environment's group in each hierarchy.
    pub fn groups(&self, id: Uuid) -> Vec<PathBuf> {
        let name = id.simple().to_string();
        self.parents.iter().map(|p| p.join(&name)).collect()
    }

    /// Makes the environment's groups with these limits (again: limits follow the spec).
    pub fn ensure(&self, id: Uuid, limits: Limits) -> Result<Vec<PathBuf>, CgroupError> {
        let groups = self.groups(id);
        for g in &groups {
            std::fs::create_dir_all(g).map_err(|source| CgroupError::Write {
                path: g.clone(),
                source,
            })?;
        }
        match self.version {
            Version::V2 => {
                let g = &groups[0];
                write(&g.join("memory.max"), &limits.memory_bytes.to_string())?;
                write(&g.join("cpu.weight"), &limits.cpu_weight.to_string())?;
                write(&g.join("pids.max"), &limits.pids.to_string())?;
            }
            Version::V1 => {
                for g in &groups {
                    if g.starts_with(Path::new(ROOT).join("memory")) {
                        write(
                            &g.join("memory.limit_in_bytes"),
                            &limits.memory_bytes.to_string(),
                        )?;
                    } else if g.starts_with(Path::new(ROOT).join("cpu")) {
                        let shares = u64::from(limits.cpu_weight) * 1024 / 100;
                        write(&g.join("cpu.shares"), &shares.max(2).to_string())?;
                    } else {
                        write(&g.join("pids.max"), &limits.pids.to_string())?;
                    }
                }
            }
        }
        Ok(groups)
    }

    /// The processes in the environment's groups.
    pub fn processes(&self, id: Uuid) -> Vec<u32> {
        // Its tasks' groups (one level down) included.
        let mut pids: Vec<u32> = self
            .groups(id)
            .iter()
            .flat_map(|g| {
                let children = std::fs::read_dir(g)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|c| c.path())
                    .filter(|c| c.is_dir());
                std::iter::once(g.clone())
                    .chain(children)
                    .collect::<Vec<_>>()
            })
            .filter_map(|g| std::fs::read_to_string(g.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Removes the environment's groups once its processes are gone (its tasks' groups
    /// first). Idempotent.
    pub fn remove(&self, id: Uuid) {
        for g in self.groups(id) {
            for child in std::fs::read_dir(&g).into_iter().flatten().flatten() {
                if child.path().is_dir() {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            if let Err(e) = std::fs::remove_dir(&g) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(group = %g.display(), error = %e, "failed to remove a cgroup");
                }
            }
        }
    }
}

/// Makes a v1 memory group (a task's, under its environment's) limited to `bytes`, swap
/// included where the kernel accounts it, so the OOM killer acts inside it.
pub fn make_memory_group(group: &Path, bytes: u64) -> Result<(), CgroupError> {
    std::fs::create_dir_all(group).map_err(|source| CgroupError::Write {
        path: group.to_owned(),
        source,
    })?;
    write(&group.join("memory.limit_in_bytes"), &bytes.to_string())?;
    let memsw = group.join("memory.memsw.limit_in_bytes");
    if memsw.exists() {
        // Best effort: without it, swap can only delay the kill.
        let _ = write(&memsw, &bytes.to_string());
    }
    Ok(())
}

/// Whether a v1 memory group's OOM killer has acted (`memory.oom_control`'s `oom_kill`).
pub fn oom_kills(group: &Path) -> u64 {
    std::fs::read_to_string(group.join("memory.oom_control"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Moves the calling process into these groups (each `cgroup.procs`).
pub fn join(groups: &[PathBuf]) -> Result<(), CgroupError> {
    let pid = std::process::id().to_string();
    for g in groups {
        write(&g.join("cgroup.procs"), &pid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(class: &str, max_workers: u32) -> hangar_tenants::EnvironmentSpec {
        hangar_tenants::EnvironmentSpec::create(
            serde_json::from_value(serde_json::json!({
                "name": "etl", "environment_class": class, "max_workers": max_workers,
            }))
            .unwrap(),
            &hangar_tenants::spec::Platform::default(),
        )
        .unwrap()
    }

    #[rstest::rstest]
    #[case("micro", 1, 3072, 50, 1536)]
    #[case("small", 4, 1536 + 4 * 2048, 100, 3072)]
    #[case("xlarge", 2, 1536 + 2 * 24576, 800, 2048)]
    fn limits_follow_the_class_and_the_most_workers(
        #[case] class: &str,
        #[case] workers: u32,
        #[case] memory_mib: u64,
        #[case] weight: u32,
        #[case] pids: u32,
    ) {
        let l = Limits::for_environment(&spec(class, workers));
        assert_eq!(l.memory_bytes, memory_mib << 20);
        assert_eq!(l.cpu_weight, weight);
        assert_eq!(l.pids, pids);
    }

    #[test]
    fn a_v2_tree_without_the_controllers_is_refused_with_the_reason() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "hugetlb\n").unwrap();
        let err = Cgroups::detect_at(root.path(), "hangar").unwrap_err();
        assert!(err.contains("memory, cpu, pids"), "{err}");
    }

    /// On the machine's real hierarchies (as root): a group is made with its limits, a process
    /// joins it, and it is removed.
    #[test]
    fn an_environment_group_gets_its_limits_and_its_processes() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let parent = format!("hangar-unit-{}", std::process::id());
        let cg = Cgroups::detect(&parent).unwrap();
        let id = Uuid::new_v4();
        let limits = Limits {
            memory_bytes: 256 << 20,
            cpu_weight: 100,
            pids: 64,
        };
        let groups = cg.ensure(id, limits).unwrap();
        let read = |g: &PathBuf, f: &str| std::fs::read_to_string(g.join(f)).unwrap();
        let memory = groups
            .iter()
            .find(|g| cg.version() == Version::V2 || g.starts_with("/sys/fs/cgroup/memory"))
            .unwrap();
        let file = if cg.version() == Version::V2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        assert_eq!(read(memory, file).trim(), (256u64 << 20).to_string());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        for g in &groups {
            std::fs::write(g.join("cgroup.procs"), &pid).unwrap();
            assert!(read(g, "cgroup.procs").lines().any(|l| l == pid));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        cg.remove(id);
        assert!(groups.iter().all(|g| !g.exists()));
        for p in &cg.parents {
            std::fs::remove_dir(p).unwrap();
        }
    }
}
