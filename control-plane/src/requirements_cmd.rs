//! `hangar requirements pack|unpack`: an environment's installed requirements as one archive
//! in the platform bucket ([`hangar_data_plane::runtime::archive`]). On Kubernetes the
//! requirements Job packs the folder it installed them into, and every pod of the environment
//! unpacks it into a folder on `PYTHONPATH` before Airflow starts.

use std::path::PathBuf;
use std::time::Duration;

use crate::bucket_source::BucketSource;
use hangar_data_plane::bucket::BucketError;
use hangar_data_plane::runtime::archive::{self, ArchiveError};
use hangar_tenants::bucket_layout::Key;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Subcommand)]
pub enum RequirementsCmd {
    /// Archive a folder of installed requirements into the platform bucket.
    Pack {
        /// The folder (`uv pip install --target` wrote it).
        #[arg(long)]
        site: PathBuf,
        #[command(flatten)]
        at: ArchiveAt,
    },
    /// Unpack an archive from the platform bucket into a folder, waiting for it to be built.
    Unpack {
        #[command(flatten)]
        at: ArchiveAt,
        /// The folder to unpack into (created if missing).
        #[arg(long)]
        into: PathBuf,
        /// How long to wait for the archive to appear (the Job may still be building it).
        #[arg(long = "wait-seconds", default_value_t = 1800)]
        wait_seconds: u64,
    },
}

#[derive(Debug, clap::Args)]
pub struct ArchiveAt {
    #[command(flatten)]
    pub bucket: BucketSource,
    /// The archive's key in the bucket
    /// (`tenants/<tenant>/environments/<env>/python/<digest>.tar.gz`).
    #[arg(long, value_parser = parse_key)]
    pub archive: Key,
}

fn parse_key(s: &str) -> Result<Key, String> {
    match Key::parse(s) {
        Some(k) if s.ends_with(".tar.gz") => Ok(k),
        _ => Err(format!(
            "--archive: {s:?} is not a bucket key ending in .tar.gz (relative, no empty, . or .. part)"
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RequirementsCmdError {
    #[error("HANGAR_BUCKET_URL: {0}")]
    Bucket(#[from] BucketError),
    #[error("failed to read or write the archive {key}")]
    Transfer {
        key: String,
        #[source]
        source: BucketError,
    },
    #[error("the archive {key} did not appear within {seconds} s")]
    Missing { key: String, seconds: u64 },
    #[error(
        "the archive {key} is larger than {} bytes: refused",
        archive::MAX_ARCHIVE_BYTES
    )]
    TooLarge { key: String },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("failed to create {path}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

/// How often `unpack` looks for an archive that is not there yet.
const POLL: Duration = Duration::from_secs(2);

pub async fn run(
    cmd: RequirementsCmd,
    cancel: CancellationToken,
) -> Result<(), RequirementsCmdError> {
    match cmd {
        RequirementsCmd::Pack { site, at } => {
            let bucket = at.bucket.open()?;
            let bytes = tokio::task::spawn_blocking(move || archive::pack(&site))
                .await
                .map_err(|e| ArchiveError::Pack {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e),
                })??;
            let size = bytes.len();
            let key = at.archive.to_string();
            // One put: readers see no archive or the whole of it.
            bucket
                .put(&bucket.path(&at.archive), bytes.into())
                .await
                .map_err(|source| RequirementsCmdError::Transfer {
                    key: key.clone(),
                    source,
                })?;
            tracing::info!(archive = %key, bytes = size, "requirements packed");
            Ok(())
        }
        RequirementsCmd::Unpack {
            at,
            into,
            wait_seconds,
        } => {
            let bucket = at.bucket.open()?;
            let key = at.archive.to_string();
            let path = bucket.path(&at.archive);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_seconds);
            let bytes = loop {
                use object_store::ObjectStoreExt;
                match bucket.store().head(&path).await {
                    Ok(meta) if meta.size > archive::MAX_ARCHIVE_BYTES => {
                        return Err(RequirementsCmdError::TooLarge { key })
                    }
                    Ok(_) => match bucket.get(&path).await {
                        Ok(b) => break b,
                        Err(e) if e.is_not_found() => {}
                        Err(source) => return Err(RequirementsCmdError::Transfer { key, source }),
                    },
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        return Err(RequirementsCmdError::Transfer {
                            key,
                            source: e.into(),
                        })
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(RequirementsCmdError::Missing {
                        key,
                        seconds: wait_seconds,
                    });
                }
                tokio::select! {
                    () = cancel.cancelled() => return Err(RequirementsCmdError::Interrupted),
                    () = tokio::time::sleep(POLL) => {}
                }
            };
            std::fs::create_dir_all(&into).map_err(|source| RequirementsCmdError::Folder {
                path: into.clone(),
                source,
            })?;
            tokio::task::spawn_blocking(move || archive::unpack(&bytes, &into))
                .await
                .map_err(|e| ArchiveError::Unpack {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e),
                })??;
            tracing::info!(archive = %key, "requirements unpacked");
            Ok(())
        }
    }
}
