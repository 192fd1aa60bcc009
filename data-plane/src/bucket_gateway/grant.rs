//! Who may do what through the bucket gateway, pure: an environment's access key names its
//! tenant, environment and id (`{tenant}.{environment}.{id}`), its secret is an HMAC of that
//! key under the gateway's key (so the agent stores nothing and a restarted agent accepts the
//! keys it handed out), and the key grants its own prefix only:
//!
//! - read and list anything under `tenants/{t}/environments/{e}/`;
//! - write only `…/python/` (the requirements Job's archive) and `…/logs/{id}/tasks/`
//!   (Airflow's remote task logs); DAGs, plugins and `requirements.txt` stay the tenant's to
//!   upload through the API, and component logs the agent's to ship.

use base64::Engine as _;
use hangar_tenants::blueprint::kubernetes::BucketAccess;
use hangar_tenants::bucket_layout as layout;
use hangar_tenants::names::{EnvName, TenantName};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// The one bucket the gateway serves; keys in it are the platform bucket's layout.
pub const BUCKET: &str = hangar_tenants::blueprint::kubernetes::GATEWAY_BUCKET;

/// The gateway's signing key, from which every environment's secret is derived.
#[derive(Clone)]
pub struct GatewayKey([u8; 32]);

impl std::fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayKey(..)")
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // An HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

impl GatewayKey {
    /// The key derived from a secret the agent already holds (its cell token): the same token
    /// gives the same key after a restart, another token another key.
    pub fn derive(secret: &[u8]) -> Self {
        Self(hmac(secret, b"hangar bucket gateway v1"))
    }

    /// The secret access key of an access key.
    pub fn secret(&self, access_key: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(hmac(&self.0, access_key.as_bytes()))
    }

    /// An environment's credentials.
    pub fn credentials(&self, grant: &Grant) -> BucketAccess {
        let access_key = grant.access_key();
        BucketAccess {
            secret_key: self.secret(&access_key),
            access_key,
        }
    }
}

/// One environment's rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub tenant: TenantName,
    pub environment: EnvName,
    pub id: Uuid,
}

/// Reading (get, head, list) or writing (put).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Grant {
    pub fn access_key(&self) -> String {
        format!("{}.{}.{}", self.tenant, self.environment, self.id.simple())
    }

    /// The grant an access key names; `None` when it names none (the secret check then has
    /// nothing to compare with, and the request is refused).
    pub fn parse(access_key: &str) -> Option<Self> {
        let mut parts = access_key.split('.');
        let (t, e, id) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || id.len() != 32 {
            return None;
        }
        Some(Self {
            tenant: TenantName::parse(t).ok()?,
            environment: EnvName::parse(e).ok()?,
            id: Uuid::try_parse(id).ok()?,
        })
    }

    /// `tenants/{t}/environments/{e}/`: everything the environment may read.
    pub fn prefix(&self) -> String {
        format!(
            "{}/",
            layout::env_prefix(self.tenant.as_str(), self.environment.as_str())
        )
    }

    /// Where the environment may write.
    pub fn writable(&self) -> [String; 2] {
        let (t, e) = (self.tenant.as_str(), self.environment.as_str());
        [
            format!("{}/", layout::env_prefix(t, e).join("python")),
            format!("{}/", layout::tasks_prefix(t, e, self.id)),
        ]
    }

    /// Whether the grant allows `access` to the object `key` (already checked to be a clean
    /// key: no empty, `.` or `..` segment).
    pub fn permits(&self, access: Access, key: &str) -> bool {
        match access {
            Access::Read => key.starts_with(&self.prefix()),
            Access::Write => self
                .writable()
                .iter()
                .any(|w| key.starts_with(w.as_str()) && key.len() > w.len()),
        }
    }

    /// Whether the grant allows listing keys that start with `prefix`: only inside its own
    /// prefix (`tenants/a/environments/e` without the slash would also match `e2`'s keys).
    pub fn permits_listing(&self, prefix: &str) -> bool {
        prefix.starts_with(&self.prefix())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rstest::rstest;

    fn grant() -> Grant {
        Grant {
            tenant: TenantName::parse("acme").unwrap(),
            environment: EnvName::parse("etl").unwrap(),
            id: Uuid::from_u128(0xabc),
        }
    }

    #[test]
    fn an_access_key_names_its_grant_and_nothing_else_parses() {
        let g = grant();
        let key = g.access_key();
        assert_eq!(key, "acme.etl.00000000000000000000000000000abc");
        assert_eq!(Grant::parse(&key), Some(g));
        for bad in [
            "",
            "acme.etl",
            "acme.etl.abc",
            "Acme.etl.00000000000000000000000000000abc",
            "acme.etl.00000000000000000000000000000abc.x",
            "acme.e/tl.00000000000000000000000000000abc",
            "acme..00000000000000000000000000000abc",
            "AKIAIOSFODNN7EXAMPLE",
        ] {
            assert_eq!(Grant::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn secrets_depend_on_the_key_and_on_the_access_key() {
        let a = GatewayKey::derive(b"cell token");
        let again = GatewayKey::derive(b"cell token");
        let other = GatewayKey::derive(b"another token");
        let key = grant().access_key();
        assert_eq!(a.secret(&key), again.secret(&key), "stable across restarts");
        assert_ne!(a.secret(&key), other.secret(&key));
        assert_ne!(
            a.secret(&key),
            a.secret("acme.etl2.00000000000000000000000000000abc")
        );
        assert_eq!(a.secret(&key).len(), 43);
        assert!(!format!("{:?}", a.credentials(&grant())).contains(&a.secret(&key)));
    }

    #[rstest]
    #[case(Access::Read, "tenants/acme/environments/etl/dags/a.py", true)]
    #[case(Access::Read, "tenants/acme/environments/etl/requirements.txt", true)]
    #[case(Access::Read, "tenants/acme/environments/etl2/dags/a.py", false)]
    #[case(Access::Read, "tenants/other/environments/etl/dags/a.py", false)]
    #[case(Access::Read, "tenants/acme/environments/etl", false)]
    #[case(Access::Write, "tenants/acme/environments/etl/python/d.tar.gz", true)]
    #[case(
        Access::Write,
        "tenants/acme/environments/etl/logs/00000000000000000000000000000abc/tasks/dag_id=d/run_id=r/task_id=t/attempt=1.log",
        true
    )]
    #[case(Access::Write, "tenants/acme/environments/etl/python/", false)]
    #[case(Access::Write, "tenants/acme/environments/etl/dags/a.py", false)]
    #[case(Access::Write, "tenants/acme/environments/etl/plugins/p.py", false)]
    #[case(Access::Write, "tenants/acme/environments/etl/requirements.txt", false)]
    #[case(
        Access::Write,
        "tenants/acme/environments/etl/logs/00000000000000000000000000000abc/components/x.ndjson",
        false
    )]
    #[case(
        Access::Write,
        "tenants/acme/environments/etl/logs/00000000000000000000000000000def/tasks/x.log",
        false
    )]
    #[case(Access::Write, "tenants/acme/environments/etl2/python/d.tar.gz", false)]
    fn a_grant_reads_its_prefix_and_writes_only_archives_and_task_logs(
        #[case] access: Access,
        #[case] key: &str,
        #[case] allowed: bool,
    ) {
        assert_eq!(grant().permits(access, key), allowed);
    }

    #[rstest]
    #[case("tenants/acme/environments/etl/", true)]
    #[case("tenants/acme/environments/etl/dags/", true)]
    #[case("tenants/acme/environments/etl/logs/x/tasks/dag_id=d/run", true)]
    #[case("tenants/acme/environments/etl", false)]
    #[case("tenants/acme/environments/", false)]
    #[case("", false)]
    fn listing_stays_inside_the_prefix(#[case] prefix: &str, #[case] allowed: bool) {
        assert_eq!(grant().permits_listing(prefix), allowed);
    }
}
