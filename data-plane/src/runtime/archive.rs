//! An environment's installed requirements as one archive in the platform bucket: built once
//! per requirements hash (on Kubernetes, by a Job in the Airflow image) and unpacked by every
//! pod of the environment before Airflow starts, so no image registry is needed.
//!
//! The archive is a gzip'd tar of a `site-packages`-like folder. Unpacking trusts nothing in
//! it: only regular files and folders are written, each under the target folder (no absolute
//! path, no `..`, no links, no device files), with their mode's permission bits only.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// Largest archive unpacked (compressed), and largest total it may unpack to.
pub const MAX_ARCHIVE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
pub const MAX_UNPACKED_BYTES: u64 = 8 * 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("failed to pack {path}")]
    Pack {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to unpack into {path}")]
    Unpack {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the archive holds {entry:?}, which is {why}: refused")]
    Refused { entry: String, why: &'static str },
    #[error("the archive unpacks to more than {MAX_UNPACKED_BYTES} bytes: refused")]
    TooLarge,
}

/// `dir`'s files and folders as a gzip'd tar (links inside it are refused: a site folder built
/// by `uv pip install --target` has none that matter, and they could point anywhere).
pub fn pack(dir: &Path) -> Result<Vec<u8>, ArchiveError> {
    let fail = |source| ArchiveError::Pack {
        path: dir.to_owned(),
        source,
    };
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    tar.follow_symlinks(false);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(dir.join(&rel))
            .map_err(fail)?
            .collect::<Result<_, _>>()
            .map_err(fail)?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let kind = entry.file_type().map_err(fail)?;
            let name = rel.join(entry.file_name());
            if kind.is_dir() {
                tar.append_dir(&name, entry.path()).map_err(fail)?;
                stack.push(name);
            } else if kind.is_file() {
                tar.append_path_with_name(entry.path(), &name)
                    .map_err(fail)?;
            } else {
                return Err(ArchiveError::Refused {
                    entry: name.display().to_string(),
                    why: "not a regular file or folder",
                });
            }
        }
    }
    tar.into_inner().and_then(GzEncoder::finish).map_err(fail)
}

/// Unpacks an archive made by [`pack`] into `into` (which must exist).
pub fn unpack(archive: &[u8], into: &Path) -> Result<(), ArchiveError> {
    let fail = |source| ArchiveError::Unpack {
        path: into.to_owned(),
        source,
    };
    let mut tar = tar::Archive::new(GzDecoder::new(archive));
    let mut total = 0u64;
    for entry in tar.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        let name = entry.path().map_err(fail)?.into_owned();
        let shown = name.display().to_string();
        let refused = |why| ArchiveError::Refused {
            entry: shown.clone(),
            why,
        };
        if name
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(refused("outside the folder"));
        }
        let target = into.join(&name);
        let mode = entry.header().mode().map_err(fail)? & 0o755;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(fail)?;
            }
            tar::EntryType::Regular => {
                total = total.saturating_add(entry.size());
                if total > MAX_UNPACKED_BYTES {
                    return Err(ArchiveError::TooLarge);
                }
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(fail)?;
                }
                // A name already there (a folder, a link) is not written through.
                if std::fs::symlink_metadata(&target).is_ok() {
                    return Err(refused("written twice"));
                }
                let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
                entry.read_to_end(&mut bytes).map_err(fail)?;
                write_new(&target, &bytes, mode).map_err(fail)?;
            }
            _ => return Err(refused("not a regular file or folder")),
        }
    }
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode | 0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_packed_folder_unpacks_the_same() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("pkg/sub")).unwrap();
        std::fs::write(src.path().join("pkg/__init__.py"), "x = 1\n").unwrap();
        std::fs::write(src.path().join("pkg/sub/data.bin"), [0u8, 1, 2]).unwrap();
        std::fs::write(src.path().join("top.pth"), "pkg\n").unwrap();
        let archive = pack(src.path()).unwrap();
        let dst = tempfile::tempdir().unwrap();
        unpack(&archive, dst.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dst.path().join("pkg/__init__.py")).unwrap(),
            "x = 1\n"
        );
        assert_eq!(
            std::fs::read(dst.path().join("pkg/sub/data.bin")).unwrap(),
            [0u8, 1, 2]
        );
        assert!(dst.path().join("top.pth").is_file());
        // The same folder packs to the same bytes (entries sorted).
        assert_eq!(pack(src.path()).unwrap().len(), archive.len());
    }

    #[test]
    fn a_link_is_not_packed() {
        let src = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("p")).unwrap();
        assert!(matches!(
            pack(src.path()),
            Err(ArchiveError::Refused { .. })
        ));
    }

    fn archive_with(entry: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(if kind == tar::EntryType::Regular {
            3
        } else {
            0
        });
        h.set_mode(0o644);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        // Written raw: the builder's own checks would refuse `..`.
        let name = h.as_old_mut().name.as_mut();
        name[..entry.len()].copy_from_slice(entry.as_bytes());
        h.set_cksum();
        tar.append(&h, &b"abc"[..usize::try_from(h.size().unwrap()).unwrap()])
            .unwrap();
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn unpacking_refuses_escapes_links_and_devices() {
        let dst = tempfile::tempdir().unwrap();
        let into = dst.path().join("site");
        std::fs::create_dir(&into).unwrap();
        for (archive, what) in [
            (
                archive_with("../evil.py", tar::EntryType::Regular, None),
                "dotdot",
            ),
            (
                archive_with("/tmp/evil.py", tar::EntryType::Regular, None),
                "absolute",
            ),
            (
                archive_with("l", tar::EntryType::Symlink, Some("/etc")),
                "symlink",
            ),
            (
                archive_with("h", tar::EntryType::Link, Some("/etc/passwd")),
                "hard link",
            ),
            (archive_with("d", tar::EntryType::Char, None), "device"),
        ] {
            let r = unpack(&archive, &into);
            assert!(
                matches!(r, Err(ArchiveError::Refused { .. })),
                "{what}: {r:?}"
            );
        }
        assert!(!dst.path().join("evil.py").exists());
        assert_eq!(std::fs::read_dir(&into).unwrap().count(), 0);
        // The control: the same writer makes an archive that unpacks.
        unpack(&archive_with("ok.py", tar::EntryType::Regular, None), &into).unwrap();
        assert_eq!(std::fs::read_to_string(into.join("ok.py")).unwrap(), "abc");
    }
}
