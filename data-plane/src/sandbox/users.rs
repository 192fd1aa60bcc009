//! One Unix user and group per environment: every process of the environment runs as it, so the
//! kernel keeps environments apart (`/proc/<pid>/environ`, signals, files with `0700`/`0600`).
//! Users are made with the system's own `useradd` and removed with `userdel`, which keep
//! `/etc/passwd`, `/etc/group` and `/etc/shadow` consistent under their locks.

use std::path::Path;
use std::time::Duration;

use nix::unistd::User;
use tokio::process::Command;
use uuid::Uuid;

/// An environment's user: its name, uid and gid (its own group, no supplementary groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("failed to run {program} for user {name}")]
    Spawn {
        program: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to {action} user {name}: {message}")]
    Command {
        action: &'static str,
        name: String,
        message: String,
    },
    #[error("failed to look up user {name}")]
    Lookup {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("user {name} exists but is not an environment user of this machine ({why})")]
    Foreign { name: String, why: String },
}

/// The user name of an environment: `hangar-` and the first 12 hex digits of its id (a system
/// user name stays within 32 characters and shows whole in `ps`).
pub fn user_name(id: Uuid) -> String {
    let hex = id.simple().to_string();
    format!("hangar-{}", &hex[..12])
}

fn lookup(name: &str) -> Result<Option<EnvUser>, UserError> {
    let user = User::from_name(name).map_err(|source| UserError::Lookup {
        name: name.to_owned(),
        source,
    })?;
    Ok(user.map(|u| EnvUser {
        name: name.to_owned(),
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    }))
}

/// `useradd`/`userdel` take a lock on the user database and fail at once when another one holds
/// it (another agent, or a test process on the same machine): such failures are retried.
async fn run(
    program: &'static str,
    action: &'static str,
    name: &str,
    args: &[&str],
) -> Result<(), UserError> {
    let mut last = String::new();
    for attempt in 0..10u32 {
        let out = Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .await
            .map_err(|source| UserError::Spawn {
                program,
                name: name.to_owned(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if !last.contains("lock") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
    }
    Err(UserError::Command {
        action,
        name: name.to_owned(),
        message: last,
    })
}

/// The environment's user, made if missing: a system user with its own group, no login shell,
/// `home` as its home folder (made by the caller, not by `useradd`).
pub async fn ensure(id: Uuid, home: &Path) -> Result<EnvUser, UserError> {
    let name = user_name(id);
    if let Some(user) = lookup(&name)? {
        return check_ours(user, home);
    }
    let home = home.display().to_string();
    let comment = format!("Hangar environment {id}");
    let result = run(
        "useradd",
        "create",
        &name,
        &[
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            &home,
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            &comment,
            &name,
        ],
    )
    .await;
    // Another agent may have made it between the lookup and `useradd`.
    match (result, lookup(&name)?) {
        (_, Some(user)) => check_ours(user, Path::new(&home)),
        (Err(e), None) => Err(e),
        (Ok(()), None) => Err(UserError::Foreign {
            name,
            why: "useradd succeeded but the user cannot be found".to_owned(),
        }),
    }
}

/// A user of this name that is not a system user, or lives elsewhere, is someone else's: it is
/// never taken over (its files and processes would become the environment's).
fn check_ours(user: EnvUser, home: &Path) -> Result<EnvUser, UserError> {
    let entry = User::from_uid(nix::unistd::Uid::from_raw(user.uid))
        .ok()
        .flatten();
    match entry {
        Some(u) if u.dir == home && user.uid != 0 => Ok(user),
        Some(u) => Err(UserError::Foreign {
            why: format!("its home is {}, not {}", u.dir.display(), home.display()),
            name: user.name,
        }),
        None => Err(UserError::Foreign {
            why: "it has no passwd entry".to_owned(),
            name: user.name,
        }),
    }
}

/// Removes the environment's user and group (after its processes are gone). Idempotent.
pub async fn remove(id: Uuid) -> Result<(), UserError> {
    let name = user_name(id);
    if lookup(&name)?.is_none() {
        return Ok(());
    }
    run("userdel", "remove", &name, &[&name]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_short_and_derived_from_the_id() {
        let id = Uuid::parse_str("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(user_name(id), "hangar-0123456789ab");
        assert!(user_name(id).len() <= 32);
    }

    /// Against the machine's real user database (as root only: the runtime needs root too).
    #[tokio::test]
    async fn a_user_is_made_once_and_removed() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let id = Uuid::new_v4();
        let home = std::env::temp_dir().join(format!("hangar-user-test-{}", id.simple()));
        let a = ensure(id, &home).await.unwrap();
        let b = ensure(id, &home).await.unwrap();
        assert_eq!(a, b);
        assert_ne!(a.uid, 0);
        let other = std::env::temp_dir().join("elsewhere");
        assert!(matches!(
            ensure(id, &other).await,
            Err(UserError::Foreign { .. })
        ));
        remove(id).await.unwrap();
        assert!(lookup(&a.name).unwrap().is_none());
        remove(id).await.unwrap();
    }
}
