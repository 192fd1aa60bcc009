//! `HANGAR_UI_DOMAIN`: each environment's Airflow UI on an origin of its own,
//! `{env}--{tenant}.{domain}`, so that one environment's pages (and the plugin JavaScript a
//! tenant installs in them) cannot read or drive another environment's UI session: browsers
//! keep cookies, storage and scripts apart by origin. Without it every environment's UI shares
//! the control plane's origin. Pure: parsing the setting, naming an environment's host, and
//! recognising one in a request's `Host`.

use hangar_tenants::{EnvName, TenantName};

/// Longest DNS label: a longer `{env}--{tenant}` cannot be resolved, so it gets no origin.
const MAX_LABEL: usize = 63;

/// Where environments' UIs are served: `http(s)://{env}--{tenant}.{domain}[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiDomain {
    /// Set when `https://` was given: a TLS proxy fronts Hangar, so session cookies are
    /// `Secure` and URLs say `https`.
    pub https: bool,
    /// Lower-case, without a leading or trailing dot.
    pub domain: String,
    /// Given with the setting, or the control plane's own port (plain `http` only).
    pub port: Option<u16>,
}

impl UiDomain {
    /// Parses `ui.example.com`, `ui.example.com:8443`, `https://ui.example.com` or
    /// `http://ui.localhost:8080` (clap's value parser of `HANGAR_UI_DOMAIN`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            (false, s.as_str())
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (domain, port) = match rest.rsplit_once(':') {
            Some((d, p)) => (
                d,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| format!("{p:?} is not a port"))?,
                ),
            ),
            None => (rest, None),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= MAX_LABEL
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if domain.is_empty() || !domain.split('.').all(label_ok) {
            return Err(format!(
                "{domain:?} is not a domain name (expected e.g. ui.example.com, https://ui.example.com or ui.localhost:8080)"
            ));
        }
        Ok(Self {
            https,
            domain: domain.to_owned(),
            port,
        })
    }

    /// Plain `http` without a port serves on the control plane's own port (`hangar dev`'s
    /// `*.localhost` names need nothing else); `https` without one is behind a TLS proxy on 443.
    pub fn on_port(mut self, port: u16) -> Self {
        if self.port.is_none() && !self.https {
            self.port = Some(port);
        }
        self
    }

    /// The host name of the environment's UI, if it can have one: `{env}--{tenant}` must be
    /// read back as exactly one pair, so names containing `--` get none (`a--b` of `c` and `a`
    /// of `b--c` would share an origin), nor do names too long for one DNS label together.
    pub fn host_of(&self, tenant: &str, env: &str) -> Option<String> {
        let label = format!("{env}--{tenant}");
        (label.len() <= MAX_LABEL && label.matches("--").count() == 1)
            .then(|| format!("{label}.{}", self.domain))
    }

    /// The environment's UI origin (`https://etl--data.ui.example.com`), if it has one.
    pub fn origin_of(&self, tenant: &str, env: &str) -> Option<String> {
        let host = self.host_of(tenant, env)?;
        let scheme = if self.https { "https" } else { "http" };
        Some(match self.port {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        })
    }

    /// The tenant and environment whose UI host a request's `Host` header names, if it names
    /// one (the port, if any, is not compared: a proxy in front may change it).
    pub fn env_of_host(&self, host: &str) -> Option<(TenantName, EnvName)> {
        let host = host.trim().to_ascii_lowercase();
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host.as_str(),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let label = name.strip_suffix(self.domain.as_str())?.strip_suffix('.')?;
        let (env, tenant) = label.split_once("--")?;
        let (tenant, env) = (TenantName::parse(tenant).ok()?, EnvName::parse(env).ok()?);
        // Only the one host `host_of` gives this pair (no second `--`, no dots in between).
        (self.host_of(tenant.as_str(), env.as_str()).as_deref() == Some(name))
            .then_some((tenant, env))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("ui.test", false, "ui.test", None)]
    #[case("UI.Example.com", false, "ui.example.com", None)]
    #[case("ui.localhost:8080", false, "ui.localhost", Some(8080))]
    #[case("https://ui.example.com/", true, "ui.example.com", None)]
    #[case("https://ui.example.com:8443", true, "ui.example.com", Some(8443))]
    #[case("http://localhost", false, "localhost", None)]
    fn parses_the_setting(
        #[case] s: &str,
        #[case] https: bool,
        #[case] domain: &str,
        #[case] port: Option<u16>,
    ) {
        assert_eq!(
            UiDomain::parse(s).unwrap(),
            UiDomain {
                https,
                domain: domain.to_owned(),
                port
            }
        );
    }

    #[rstest]
    #[case("")]
    #[case(".ui.test")]
    #[case("ui..test")]
    #[case("ui.test:http")]
    #[case("ftp://ui.test")]
    #[case("ui_x.test")]
    #[case("ui.test/path")]
    fn refuses_what_is_no_domain(#[case] s: &str) {
        assert!(UiDomain::parse(s).is_err(), "{s}");
    }

    #[test]
    fn names_each_environments_origin() {
        let http = UiDomain::parse("ui.test").unwrap().on_port(8080);
        assert_eq!(
            http.origin_of("data", "etl").as_deref(),
            Some("http://etl--data.ui.test:8080")
        );
        let https = UiDomain::parse("https://ui.example.com")
            .unwrap()
            .on_port(8080);
        assert_eq!(
            https.origin_of("data", "etl").as_deref(),
            Some("https://etl--data.ui.example.com")
        );
        // Ambiguous or too long for a DNS label: no origin of its own.
        assert_eq!(http.host_of("b--c", "a"), None);
        assert_eq!(http.host_of("c", "a--b"), None);
        assert_eq!(http.host_of(&"t".repeat(40), &"e".repeat(22)), None);
        assert!(http.host_of(&"t".repeat(40), &"e".repeat(21)).is_some());
    }

    #[rstest]
    #[case("etl--data.ui.test", Some(("data", "etl")))]
    #[case("etl--data.ui.test:8080", Some(("data", "etl")))]
    #[case("ETL--Data.UI.test.", Some(("data", "etl")))]
    #[case("ui.test", None)]
    #[case("127.0.0.1:8080", None)]
    #[case("etl-data.ui.test", None)]
    #[case("a--b--c.ui.test", None)]
    #[case("x.etl--data.ui.test", None)]
    #[case("etl--data.ui.test.evil", None)]
    #[case("etl--dataui.test", None)]
    #[case("etl--data.other.test", None)]
    #[case("etl--Da_ta.ui.test", None)]
    fn recognises_an_environments_host(#[case] host: &str, #[case] want: Option<(&str, &str)>) {
        let d = UiDomain::parse("ui.test").unwrap();
        let got = d.env_of_host(host);
        assert_eq!(
            got.as_ref().map(|(t, e)| (t.as_str(), e.as_str())),
            want,
            "{host}"
        );
    }
}
