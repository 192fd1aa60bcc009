//! Headless Chromium (Debian's `chromium` and `chromium-driver`) driven over WebDriver, for the
//! portal's browser tests. With `HANGAR_PORTAL_SCREENSHOTS=<dir>` the tests save screenshots
//! of the pages they pass through (what `scripts/portal-screenshots` puts in docs/portal/).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A browser session, and the ChromeDriver it runs through (stopped with it).
pub struct Browser {
    pub client: Client,
    pub base: String,
    _driver: tokio::process::Child,
    shots: Option<PathBuf>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Browser {
    /// Starts ChromeDriver on a free port and a headless Chromium through it, `width` pixels
    /// wide, on the portal at `base`.
    pub async fn start(base: &str, width: u32) -> anyhow::Result<Self> {
        let port = free_port()?;
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("failed to start chromedriver (scripts/bootstrap installs chromium-driver)")?;
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while reqwest::get(format!("{url}/status")).await.is_err() {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut options = json!({
            "binary": "/usr/bin/chromium",
            // Root needs --no-sandbox; /dev/shm is small in containers.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", format!("--window-size={width},900")],
        });
        // Chromium's windows are at least 500 pixels wide: a phone is emulated instead.
        if width < 500 {
            options["mobileEmulation"] = json!({
                "deviceMetrics": { "width": width, "height": 844, "pixelRatio": 1.0 },
            });
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".to_owned(), options);
        // ChromeDriver is on loopback: plain HTTP, no TLS stack.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .context("failed to open a Chromium session")?;
        let shots = std::env::var_os("HANGAR_PORTAL_SCREENSHOTS").map(PathBuf::from);
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            _driver: driver,
            shots,
        })
    }

    pub async fn goto(&self, path: &str) -> anyhow::Result<()> {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        Ok(self.client.goto(&url).await?)
    }

    /// The path (and query) of the page shown.
    pub async fn path(&self) -> anyhow::Result<String> {
        let u = self.client.current_url().await?;
        Ok(match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        })
    }

    /// Waits until the page shown has a path (and query) that satisfies `ok`; returns it.
    pub async fn wait_path(
        &self,
        within: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let start = Instant::now();
        loop {
            let p = self.path().await?;
            if ok(&p) {
                return Ok(p);
            }
            anyhow::ensure!(
                start.elapsed() < within,
                "the browser stayed on {p} for {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn find(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        Ok(self.client.find(Locator::Css(css)).await?)
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// Waits until the element's text satisfies `ok`; returns the text.
    pub async fn wait_text(
        &self,
        css: &str,
        within: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let start = Instant::now();
        let mut last = String::new();
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                if let Ok(t) = e.text().await {
                    if ok(&t) {
                        return Ok(t);
                    }
                    last = t;
                }
            }
            anyhow::ensure!(
                start.elapsed() < within,
                "{css} did not show what was awaited within {within:?}; it shows {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Types into a field, replacing what it holds.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let e = self.find(css).await?;
        e.clear().await?;
        e.send_keys(text).await?;
        Ok(())
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        Ok(self.find(css).await?.click().await?)
    }

    /// Runs a script in the page; returns its value.
    pub async fn js(&self, script: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    /// Saves a screenshot as `<name>.png` when screenshots are asked for.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<()> {
        let Some(dir) = &self.shots else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)?;
        let png = self.client.screenshot().await?;
        std::fs::write(dir.join(format!("{name}.png")), png)?;
        Ok(())
    }

    pub async fn close(self) -> anyhow::Result<()> {
        self.client.close().await?;
        Ok(())
    }
}
