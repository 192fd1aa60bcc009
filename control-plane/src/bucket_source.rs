//! Where a command finds the platform bucket: its URL as an argument (or `HANGAR_BUCKET_URL`),
//! or in a file (`--bucket-url-file`), for a URL that carries keys: a Kubernetes Secret's file,
//! since arguments and variables are visible to whoever can read the pod.

use std::path::PathBuf;

use hangar_data_plane::bucket::{Bucket, BucketError};

#[derive(Debug, Clone, clap::Args)]
pub struct BucketSource {
    /// The platform bucket by URL (as `hangar serve`'s `HANGAR_BUCKET_URL`).
    #[arg(
        long = "bucket-url",
        env = "HANGAR_BUCKET_URL",
        required_unless_present = "url_file"
    )]
    pub url: Option<String>,
    /// A file holding the bucket's URL (wins over --bucket-url): for a URL with keys in it,
    /// such as the bucket gateway's with an environment's credentials.
    #[arg(long = "bucket-url-file")]
    pub url_file: Option<PathBuf>,
}

impl BucketSource {
    /// The bucket: the file's URL (surrounding whitespace ignored), else the argument's.
    pub fn open(&self) -> Result<Bucket, BucketError> {
        match (&self.url_file, &self.url) {
            (Some(path), _) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| BucketError::UrlFile {
                        path: path.clone(),
                        source,
                    })?;
                Bucket::from_url(text.trim())
            }
            (None, Some(url)) => Bucket::from_url(url),
            (None, None) => Err(BucketError::Url {
                url: String::new(),
                reason: "give --bucket-url or --bucket-url-file".to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bucket: BucketSource,
    }

    #[test]
    fn a_url_file_wins_and_its_errors_name_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        let local = dir.path().join("bucket");
        std::fs::write(&file, format!("file://{}\n", local.display())).unwrap();
        let cli = Cli::try_parse_from([
            "x",
            "--bucket-url",
            "nope://",
            "--bucket-url-file",
            file.to_str().unwrap(),
        ])
        .unwrap();
        assert!(cli.bucket.open().is_ok());
        let missing = Cli::try_parse_from(["x", "--bucket-url-file", "/nonexistent/url"]).unwrap();
        let err = missing.bucket.open().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/url"), "{err}");
        let bad = std::fs::write(&file, "s3://b?secret_access_key=k&bogus=1");
        bad.unwrap();
        let err = cli.bucket.open().unwrap_err().to_string();
        assert!(
            !err.contains("secret_access_key=k"),
            "no key in errors: {err}"
        );
    }
}
