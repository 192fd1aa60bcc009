//! `hangar sandbox-exec`: confines the calling process, then replaces it with an environment's
//! program, so every process of an environment starts already confined and all it forks stays
//! so. In order: join the environment's cgroups (while still allowed to write them), give it a
//! `/proc` of its own in which other users' processes cannot be read ([`private_proc`]), restrict
//! the filesystem with Landlock (which also sets `no_new_privs`, so no set-uid program can
//! regain anything), drop every supplementary group and become the environment's user, then
//! `execve` the program with the environment the caller gave (the supervisor starts it from an
//! empty one).
//!
//! It is a subcommand of the `hangar` binary rather than code run between `fork` and `exec`,
//! because that code would be `unsafe` (only async-signal-safe calls are allowed there).
//!
//! Arguments: `[--uid N --gid N] [--private-proc] [--cgroup DIR]… [--landlock] [--read DIR]…
//! [--write DIR]… -- PROGRAM ARGS…`; `--probe` tries the private `/proc` and a Landlock ruleset
//! on itself and prints what worked ([`Probe`], JSON).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    ABI,
};
use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};

/// The Landlock ABI whose filesystem rights are handled (Linux 6.10: truncate and device ioctl
/// included); older kernels enforce what they know.
pub const LANDLOCK_ABI: ABI = ABI::V5;
/// The number reported for [`LANDLOCK_ABI`].
pub const LANDLOCK_ABI_NUMBER: u32 = 5;

/// What to confine the program with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecArgs {
    pub user: Option<(u32, u32)>,
    /// Mount a `/proc` showing only the process's own user's processes.
    pub private_proc: bool,
    pub cgroups: Vec<PathBuf>,
    pub landlock: bool,
    /// Readable (and executable) hierarchies.
    pub read: Vec<PathBuf>,
    /// Readable and writable hierarchies.
    pub write: Vec<PathBuf>,
    pub probe: bool,
    pub command: Vec<OsString>,
}

impl ExecArgs {
    /// The arguments that make `hangar sandbox-exec` do this (without the command).
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((uid, gid)) = self.user {
            out.extend(["--uid".to_owned(), uid.to_string()]);
            out.extend(["--gid".to_owned(), gid.to_string()]);
        }
        if self.private_proc {
            out.push("--private-proc".to_owned());
        }
        for g in &self.cgroups {
            out.extend(["--cgroup".to_owned(), g.display().to_string()]);
        }
        if self.landlock {
            out.push("--landlock".to_owned());
            for p in &self.read {
                out.extend(["--read".to_owned(), p.display().to_string()]);
            }
            for p in &self.write {
                out.extend(["--write".to_owned(), p.display().to_string()]);
            }
        }
        out.push("--".to_owned());
        out
    }

    /// Parses the arguments after `sandbox-exec`.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, String> {
        let mut it = args.into_iter();
        let mut out = Self::default();
        let mut uid = None;
        let mut gid = None;
        while let Some(arg) = it.next() {
            let flag = arg.to_string_lossy().into_owned();
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--" => {
                    out.command = it.collect();
                    break;
                }
                "--probe" => out.probe = true,
                "--landlock" => out.landlock = true,
                "--private-proc" => out.private_proc = true,
                "--uid" | "--gid" => {
                    let v = value()?;
                    let n: u32 = v
                        .to_string_lossy()
                        .parse()
                        .map_err(|_| format!("{flag} needs a number, not {v:?}"))?;
                    if flag == "--uid" {
                        uid = Some(n);
                    } else {
                        gid = Some(n);
                    }
                }
                "--cgroup" => out.cgroups.push(value()?.into()),
                "--read" => out.read.push(value()?.into()),
                "--write" => out.write.push(value()?.into()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        out.user = match (uid, gid) {
            (Some(u), Some(g)) if u != 0 && g != 0 => Some((u, g)),
            (None, None) => None,
            _ => return Err("--uid and --gid go together and are not 0".to_owned()),
        };
        if !out.probe && out.command.is_empty() {
            return Err("no program after --".to_owned());
        }
        Ok(out)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Cgroup(#[from] super::cgroups::CgroupError),
    #[error("failed to give the process a private /proc")]
    PrivateProc(#[source] nix::Error),
    #[error("failed to confine the filesystem with Landlock")]
    Landlock(#[from] landlock::RulesetError),
    #[error("failed to become uid {uid} gid {gid}")]
    User {
        uid: u32,
        gid: u32,
        #[source]
        source: nix::Error,
    },
    #[error("failed to run {program}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Restricts this process's filesystem access to `read` (read and execute) and `write` (all).
pub fn restrict(read: &[PathBuf], write: &[PathBuf]) -> Result<RulesetStatus, ExecError> {
    let existing = |paths: &[PathBuf]| -> Vec<PathBuf> {
        paths.iter().filter(|p| p.exists()).cloned().collect()
    };
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        .create()?
        .add_rules(path_beneath_rules(
            existing(read),
            AccessFs::from_read(LANDLOCK_ABI),
        ))?
        .add_rules(path_beneath_rules(
            existing(write),
            AccessFs::from_all(LANDLOCK_ABI),
        ))?
        .restrict_self()?;
    Ok(status.ruleset)
}

/// Confines this process as `args` says and becomes its program; returns only on failure.
pub fn run(args: &ExecArgs) -> ExecError {
    match confine(args) {
        Ok(()) => {}
        Err(e) => return e,
    }
    let Some((program, rest)) = args.command.split_first() else {
        return ExecError::Exec {
            program: String::new(),
            source: std::io::Error::other("no program"),
        };
    };
    let source = std::process::Command::new(program).args(rest).exec();
    ExecError::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}

/// A mount namespace of its own whose `/proc` refuses to show anything of another user's
/// processes (`hidepid=noaccess`: their command lines, status and environment; the option is
/// checked at each access, so after the change of user too). Not `hidepid=invisible`: Airflow's
/// task supervisor makes itself non-dumpable, which `invisible` turns into "no such process"
/// for its own task process (psutil then fails every task), while `noaccess` leaves that
/// process listed and psutil takes the refused read in its stride.
fn private_proc() -> Result<(), ExecError> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_NEWNS).map_err(ExecError::PrivateProc)?;
    // Nothing mounted here may propagate back to the machine's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(ExecError::PrivateProc)?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("hidepid=noaccess"),
    )
    .map_err(ExecError::PrivateProc)
}

fn confine(args: &ExecArgs) -> Result<(), ExecError> {
    super::cgroups::join(&args.cgroups)?;
    if args.private_proc {
        private_proc()?;
    }
    if args.landlock {
        restrict(&args.read, &args.write)?;
    }
    if let Some((uid, gid)) = args.user {
        let err = |source| ExecError::User { uid, gid, source };
        setgroups(&[]).map_err(err)?;
        setgid(Gid::from_raw(gid)).map_err(err)?;
        setuid(Uid::from_raw(uid)).map_err(err)?;
        // Losing root must be for good: if root could be regained, stop here.
        if setuid(Uid::from_raw(0)).is_ok() {
            return Err(err(nix::Error::EPERM));
        }
    }
    Ok(())
}

/// What `--probe` finds this machine enforces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    /// `full`, `partial` or `none`, or why it failed.
    pub landlock: Result<String, String>,
    /// Whether a private `/proc` could be mounted (root only), or why not.
    pub private_proc: Result<(), String>,
}

/// Tries each confinement on this (throw-away) process.
pub fn probe() -> Probe {
    let text = |e: ExecError| format!("{e}{}", crate::agent::source_chain(&e));
    let private_proc = if nix::unistd::geteuid().is_root() {
        private_proc().map_err(text)
    } else {
        Err("the agent is not root".to_owned())
    };
    let landlock = restrict(&[PathBuf::from("/")], &[])
        .map(|status| {
            match status {
                RulesetStatus::FullyEnforced => "full",
                RulesetStatus::PartiallyEnforced => "partial",
                RulesetStatus::NotEnforced => "none",
            }
            .to_owned()
        })
        .map_err(text);
    Probe {
        landlock,
        private_proc,
    }
}

/// The entry point of `hangar sandbox-exec` (the arguments after it): an exit code, after a
/// message on stderr, when it could not become the program.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let parsed = match ExecArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hangar sandbox-exec: {e}");
            return 2;
        }
    };
    if parsed.probe {
        println!("{}", serde_json::to_string(&probe()).unwrap_or_default());
        return 0;
    }
    let e = run(&parsed);
    eprintln!("hangar sandbox-exec: {e}{}", crate::agent::source_chain(&e));
    126
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn arguments_round_trip() {
        let a = ExecArgs {
            user: Some((1001, 1002)),
            private_proc: true,
            cgroups: vec!["/sys/fs/cgroup/memory/hangar/x".into()],
            landlock: true,
            read: vec!["/usr".into()],
            write: vec!["/srv/e/logs".into()],
            probe: false,
            command: vec!["airflow".into(), "scheduler".into()],
        };
        let mut args: Vec<OsString> = a.to_args().into_iter().map(OsString::from).collect();
        args.extend(a.command.clone());
        assert_eq!(ExecArgs::parse(args).unwrap(), a);
    }

    #[rstest::rstest]
    #[case(&["--uid", "5", "--", "x"], "go together")]
    #[case(&["--uid", "0", "--gid", "0", "--", "x"], "not 0")]
    #[case(&["--uid", "x", "--gid", "1", "--", "x"], "needs a number")]
    #[case(&["--landlock"], "no program")]
    #[case(&["--bogus", "--", "x"], "unknown argument")]
    fn bad_arguments_are_refused(#[case] args: &[&str], #[case] says: &str) {
        let err = ExecArgs::parse(args.iter().map(OsString::from)).unwrap_err();
        assert!(err.contains(says), "{err}");
    }
}
