//! Each environment's Celery broker on a shared Redis: its own ACL user, allowed only keys and
//! channels under its own prefix, which Celery uses through kombu's `global_keyprefix`. Commands
//! that see or touch the whole keyspace (FLUSHALL, KEYS, SCAN, RANDOMKEY, admin commands) are
//! denied, so one tenant can neither read nor wipe another's queues. On a Redis that has no ACL
//! commands for its users (the managed ones), the user is a password digest that the agent's
//! broker gateway checks, and the gateway enforces the same rules ([`crate::broker_gateway`]).

use rand::distributions::{Alphanumeric, DistString};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("failed to connect to the broker's Redis as its admin")]
    Connect(#[source] redis::RedisError),
    #[error("failed to create broker user {user}")]
    CreateUser {
        user: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("failed to remove broker user {user} and its keys")]
    RemoveUser {
        user: String,
        #[source]
        source: redis::RedisError,
    },
}

/// Whether environments reach the broker's Redis over TLS: as the agent's admin URL does
/// (`rediss://`; `rediss://…#insecure` does not check the server's certificate, for a Redis
/// whose CA is not a public one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisTls {
    Off,
    Verified,
    Unverified,
}

impl RedisTls {
    /// As the admin URL `url` says.
    pub fn of_url(url: &str) -> Self {
        match url.split_once("://") {
            Some(("rediss", rest)) if rest.ends_with("#insecure") => Self::Unverified,
            Some(("rediss", _)) => Self::Verified,
            _ => Self::Off,
        }
    }
}

/// The broker credentials and key prefix of one environment.
#[derive(Debug, Clone)]
pub struct BrokerUser {
    pub username: String,
    pub password: SecretString,
    /// Every key and channel the environment may use starts with this.
    pub key_prefix: String,
}

impl BrokerUser {
    /// The user and prefix of an environment, derived from its id so a re-created environment
    /// of the same name never inherits old queues.
    pub fn for_environment(env: Uuid, password: SecretString) -> Self {
        let id = env.simple();
        Self {
            username: format!("env-{id}"),
            password,
            key_prefix: format!("hangar:{id}:"),
        }
    }

    /// A fresh random broker password.
    pub fn generate_password() -> SecretString {
        SecretString::from(Alphanumeric.sample_string(&mut rand::thread_rng(), 32))
    }

    /// Celery's `broker_url` for this user on `host:port`, over TLS as `tls` says.
    pub fn broker_url(&self, host: &str, port: u16, tls: RedisTls) -> SecretString {
        let (scheme, query) = match tls {
            RedisTls::Off => ("redis", ""),
            RedisTls::Verified => ("rediss", "?ssl_cert_reqs=required"),
            RedisTls::Unverified => ("rediss", "?ssl_cert_reqs=none"),
        };
        SecretString::from(format!(
            "{scheme}://{}:{}@{host}:{port}/0{query}",
            self.username,
            self.password.expose_secret()
        ))
    }

    /// The ACL rules of this user: only its prefix, no keyspace-wide or admin commands.
    fn acl_rules(&self) -> Vec<String> {
        let p = &self.key_prefix;
        [
            "reset",
            "on",
            &format!(">{}", self.password.expose_secret()),
            &format!("~{p}*"),
            &format!("&{p}*"),
            "+@all",
            "-@admin",
            "-@dangerous",
            "-scan",
            "-randomkey",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }
}

/// Where an environment's broker user lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerUsers {
    /// A Redis ACL user (`ACL SETUSER`), on a Redis that has them: environments connect to it
    /// directly.
    Acl,
    /// A digest the agent's broker gateway checks (`broker_gateway`): environments connect to
    /// the gateway, which needs nothing of the platform Redis but its admin's login (a managed
    /// Redis's).
    Gateway,
}

/// Manages environment users on one Redis, as its admin.
#[derive(Clone)]
pub struct BrokerAdmin {
    /// Reconnects by itself (with backoff and jitter) when Redis restarts.
    conn: redis::aio::ConnectionManager,
    /// How environments connect, as the admin does (or in the clear to the gateway).
    pub tls: RedisTls,
    pub users: BrokerUsers,
}

impl BrokerAdmin {
    pub async fn connect(admin_url: &SecretString) -> Result<Self, BrokerError> {
        // The Redis client's TLS takes the process's rustls provider, and this process links
        // two (ring and aws-lc-rs), so none is chosen until one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client =
            redis::Client::open(admin_url.expose_secret()).map_err(BrokerError::Connect)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(std::time::Duration::from_secs(5));
        let conn = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(BrokerError::Connect)?;
        Ok(Self {
            conn,
            tls: RedisTls::of_url(admin_url.expose_secret()),
            users: BrokerUsers::Acl,
        })
    }

    /// Keeps environments' users for the broker gateway instead of as ACL users: environments
    /// then connect to the gateway, in the clear (it is the agent's own, next to them).
    pub fn through_gateway(mut self) -> Self {
        self.users = BrokerUsers::Gateway;
        self.tls = RedisTls::Off;
        self
    }

    /// Creates the user, or resets it to exactly these rules and password (idempotent).
    /// The ACL file is saved so the user outlives a restart of Redis. A Redis that is
    /// restarting is waited for (see [`retrying`]).
    pub async fn ensure_user(&self, user: &BrokerUser) -> Result<(), BrokerError> {
        retrying("create a broker user", || self.ensure_user_once(user))
            .await
            .map_err(|source| BrokerError::CreateUser {
                user: user.username.clone(),
                source,
            })
    }

    async fn ensure_user_once(&self, user: &BrokerUser) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        if self.users == BrokerUsers::Gateway {
            return redis::cmd("HSET")
                .arg(crate::broker_gateway::USERS_KEY)
                .arg(&user.username)
                .arg(crate::broker_gateway::password_digest(&user.password))
                .query_async::<()>(&mut conn)
                .await;
        }
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user.username)
            .arg(user.acl_rules())
            .query_async::<()>(&mut conn)
            .await?;
        redis::cmd("ACL")
            .arg("SAVE")
            .query_async::<()>(&mut conn)
            .await
    }

    /// Deletes the user (closing its connections; the gateway's within its recheck) and every
    /// key under its prefix. Idempotent; a Redis that is restarting is waited for.
    pub async fn remove_user(&self, user: &BrokerUser) -> Result<(), BrokerError> {
        retrying("remove a broker user", || self.remove_user_once(user))
            .await
            .map_err(|source| BrokerError::RemoveUser {
                user: user.username.clone(),
                source,
            })
    }

    async fn remove_user_once(&self, user: &BrokerUser) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        match self.users {
            BrokerUsers::Gateway => {
                redis::cmd("HDEL")
                    .arg(crate::broker_gateway::USERS_KEY)
                    .arg(&user.username)
                    .query_async::<i64>(&mut conn)
                    .await?;
            }
            BrokerUsers::Acl => {
                redis::cmd("ACL")
                    .arg("DELUSER")
                    .arg(&user.username)
                    .query_async::<i64>(&mut conn)
                    .await?;
                redis::cmd("ACL")
                    .arg("SAVE")
                    .query_async::<()>(&mut conn)
                    .await?;
            }
        }
        let pattern = format!("{}*", user.key_prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<i64>(&mut conn)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits between tries of an admin command whose connection broke: the connection manager
/// reconnects meanwhile (with its own backoff and jitter). About 15 s in all, the time a Redis
/// takes to restart.
const RETRY_DELAYS_MS: [u64; 5] = [250, 500, 1_000, 4_000, 8_000];

/// Runs an idempotent admin command, again while its failure is the connection's (Redis
/// restarting or unreachable for a moment), logging each retry.
async fn retrying<F, Fut>(what: &'static str, mut run: F) -> redis::RedisResult<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<()>>,
{
    let mut delays = RETRY_DELAYS_MS.iter();
    loop {
        match run().await {
            Err(e) if is_connection_failure(&e) => {
                let Some(ms) = delays.next() else {
                    return Err(e);
                };
                tracing::warn!(error = %e, retry_in_ms = ms, "the broker's Redis did not answer to {what}; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
            }
            done => return done,
        }
    }
}

fn is_connection_failure(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::embedded::PrivateRedis;

    async fn connect_as(user: &BrokerUser, port: u16) -> redis::aio::MultiplexedConnection {
        redis::Client::open(
            user.broker_url("127.0.0.1", port, RedisTls::Off)
                .expose_secret(),
        )
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
    }

    fn is_noperm(r: redis::RedisResult<impl std::fmt::Debug>) -> bool {
        // redis-rs spells Redis's NOPERM as "NoPerm".
        matches!(&r, Err(e) if e.to_string().to_ascii_uppercase().contains("NOPERM"))
    }

    #[test]
    fn environments_reach_the_broker_over_tls_when_the_admin_does() {
        assert_eq!(RedisTls::of_url("redis://a:b@h:1/0"), RedisTls::Off);
        assert_eq!(RedisTls::of_url("rediss://a:b@h:1/0"), RedisTls::Verified);
        assert_eq!(
            RedisTls::of_url("rediss://a:b@h:1/0#insecure"),
            RedisTls::Unverified
        );
        let u = BrokerUser::for_environment(Uuid::nil(), SecretString::from("pw".to_owned()));
        let url = |tls| u.broker_url("h", 6380, tls).expose_secret().to_owned();
        let user = "env-00000000000000000000000000000000:pw@h:6380/0";
        assert_eq!(url(RedisTls::Off), format!("redis://{user}"));
        assert_eq!(
            url(RedisTls::Verified),
            format!("rediss://{user}?ssl_cert_reqs=required")
        );
        assert_eq!(
            url(RedisTls::Unverified),
            format!("rediss://{user}?ssl_cert_reqs=none")
        );
    }

    /// Redis restarted under the agent (same address, its ACL file kept): the admin's next
    /// commands wait for it and reconnect; nothing is left half-done.
    #[tokio::test]
    async fn the_admin_reconnects_when_redis_restarts() {
        let tmp = tempfile::Builder::new()
            .prefix("hangar-broker-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("redis");
        let redis = PrivateRedis::start(&dir).await.unwrap();
        let admin = BrokerAdmin::connect(&redis.admin_url()).await.unwrap();
        let a = BrokerUser::for_environment(Uuid::new_v4(), BrokerUser::generate_password());
        admin.ensure_user(&a).await.unwrap();

        redis.stop().await.unwrap();
        // Down for a second, then back on the same port with the same files.
        let conf = dir.join("redis.conf");
        let restart = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let out = tokio::process::Command::new("redis-server")
                .arg(&conf)
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        });
        let b = BrokerUser::for_environment(Uuid::new_v4(), BrokerUser::generate_password());
        admin.ensure_user(&b).await.unwrap();
        restart.await.unwrap();
        // Both users work: `a` outlived the restart (the ACL file), `b` was made after it.
        for u in [&a, &b] {
            let mut c = connect_as(u, redis.port()).await;
            redis::cmd("LPUSH")
                .arg(format!("{}default", u.key_prefix))
                .arg("task")
                .query_async::<i64>(&mut c)
                .await
                .unwrap();
        }
        admin.remove_user(&a).await.unwrap();
        admin.remove_user(&b).await.unwrap();
        redis.stop().await.unwrap();
    }

    #[tokio::test]
    async fn environment_users_are_made_on_a_redis_that_takes_tls_only() {
        let tmp = tempfile::Builder::new()
            .prefix("hangar-broker-")
            .tempdir()
            .unwrap();
        let mut redis = PrivateRedis::start(&tmp.path().join("redis"))
            .await
            .unwrap();
        redis.require_test_tls().await;
        let admin = BrokerAdmin::connect(&redis.admin_url()).await.unwrap();
        assert_eq!(admin.tls, RedisTls::Unverified);
        let a = BrokerUser::for_environment(Uuid::new_v4(), BrokerUser::generate_password());
        admin.ensure_user(&a).await.unwrap();
        let as_a = format!(
            "rediss://{}:{}@127.0.0.1:{}/0#insecure",
            a.username,
            a.password.expose_secret(),
            redis.port()
        );
        let mut ca = redis::Client::open(as_a.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        redis::cmd("LPUSH")
            .arg(format!("{}default", a.key_prefix))
            .arg("task")
            .query_async::<i64>(&mut ca)
            .await
            .unwrap();
        // Without TLS, or checking a certificate no public CA signed, nobody gets in.
        let plain = as_a
            .replace("rediss://", "redis://")
            .replace("#insecure", "");
        let checked = as_a.replace("#insecure", "");
        for url in [plain, checked] {
            let tried = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                let mut c = redis::Client::open(url.as_str())?
                    .get_multiplexed_async_connection()
                    .await?;
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
            .await;
            assert!(!matches!(tried, Ok(Ok(_))), "{url}");
        }
        admin.remove_user(&a).await.unwrap();
    }

    #[tokio::test]
    async fn an_environment_user_reaches_only_its_own_prefix_and_is_removed_with_its_keys() {
        let tmp = tempfile::Builder::new()
            .prefix("hangar-broker-")
            .tempdir()
            .unwrap();
        let redis = PrivateRedis::start(&tmp.path().join("redis"))
            .await
            .unwrap();
        let admin = BrokerAdmin::connect(&redis.admin_url()).await.unwrap();
        let a = BrokerUser::for_environment(Uuid::new_v4(), BrokerUser::generate_password());
        let b = BrokerUser::for_environment(Uuid::new_v4(), BrokerUser::generate_password());
        admin.ensure_user(&a).await.unwrap();
        admin.ensure_user(&a).await.unwrap(); // idempotent
        admin.ensure_user(&b).await.unwrap();
        let mut ca = connect_as(&a, redis.port()).await;
        let mut cb = connect_as(&b, redis.port()).await;

        let a_queue = format!("{}default", a.key_prefix);
        let b_queue = format!("{}default", b.key_prefix);
        redis::cmd("LPUSH")
            .arg(&a_queue)
            .arg("task-a")
            .query_async::<i64>(&mut ca)
            .await
            .unwrap();
        redis::cmd("LPUSH")
            .arg(&b_queue)
            .arg("task-b")
            .query_async::<i64>(&mut cb)
            .await
            .unwrap();

        // A cannot read, write or pop B's queue, nor see or wipe the keyspace.
        assert!(is_noperm(
            redis::cmd("LRANGE")
                .arg(&b_queue)
                .arg(0)
                .arg(-1)
                .query_async::<Vec<String>>(&mut ca)
                .await
        ));
        assert!(is_noperm(
            redis::cmd("LPUSH")
                .arg(&b_queue)
                .arg("evil")
                .query_async::<i64>(&mut ca)
                .await
        ));
        assert!(is_noperm(
            redis::cmd("RPOP")
                .arg(&b_queue)
                .query_async::<Option<String>>(&mut ca)
                .await
        ));
        assert!(is_noperm(
            redis::cmd("SET")
                .arg("unprefixed")
                .arg("x")
                .query_async::<()>(&mut ca)
                .await
        ));
        assert!(is_noperm(
            redis::cmd("FLUSHALL").query_async::<()>(&mut ca).await
        ));
        assert!(is_noperm(
            redis::cmd("KEYS")
                .arg("*")
                .query_async::<Vec<String>>(&mut ca)
                .await
        ));
        assert!(is_noperm(
            redis::cmd("SCAN")
                .arg(0)
                .query_async::<(u64, Vec<String>)>(&mut ca)
                .await
        ));
        assert!(is_noperm(
            redis::cmd("PUBLISH")
                .arg(format!("{}events", b.key_prefix))
                .arg("x")
                .query_async::<i64>(&mut ca)
                .await
        ));
        assert!(is_noperm(
            redis::cmd("ACL")
                .arg("LIST")
                .query_async::<Vec<String>>(&mut ca)
                .await
        ));
        // A's own channel is allowed.
        redis::cmd("PUBLISH")
            .arg(format!("{}events", a.key_prefix))
            .arg("x")
            .query_async::<i64>(&mut ca)
            .await
            .unwrap();
        // B's queue is intact.
        let b_items: Vec<String> = redis::cmd("LRANGE")
            .arg(&b_queue)
            .arg(0)
            .arg(-1)
            .query_async(&mut cb)
            .await
            .unwrap();
        assert_eq!(b_items, vec!["task-b"]);

        // Removing A drops its user and its keys, and nothing of B's.
        admin.remove_user(&a).await.unwrap();
        admin.remove_user(&a).await.unwrap(); // idempotent
        let auth = redis::Client::open(
            a.broker_url("127.0.0.1", redis.port(), RedisTls::Off)
                .expose_secret(),
        )
        .unwrap()
        .get_multiplexed_async_connection()
        .await;
        assert!(auth.is_err(), "A's credentials no longer work");
        let mut admin_conn = redis::Client::open(redis.admin_url().expose_secret())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let left: i64 = redis::cmd("EXISTS")
            .arg(&a_queue)
            .query_async(&mut admin_conn)
            .await
            .unwrap();
        assert_eq!(left, 0);
        let b_left: i64 = redis::cmd("EXISTS")
            .arg(&b_queue)
            .query_async(&mut admin_conn)
            .await
            .unwrap();
        assert_eq!(b_left, 1);
        redis.stop().await.unwrap();
    }

    #[tokio::test]
    async fn environment_users_survive_a_redis_restart() {
        let tmp = tempfile::Builder::new()
            .prefix("hangar-broker-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("redis");
        let redis = PrivateRedis::start(&dir).await.unwrap();
        let a = BrokerUser::for_environment(Uuid::new_v4(), BrokerUser::generate_password());
        BrokerAdmin::connect(&redis.admin_url())
            .await
            .unwrap()
            .ensure_user(&a)
            .await
            .unwrap();
        let mut ca = connect_as(&a, redis.port()).await;
        redis::cmd("SET")
            .arg(format!("{}k", a.key_prefix))
            .arg("v")
            .query_async::<()>(&mut ca)
            .await
            .unwrap();
        redis.stop().await.unwrap();
        let redis = PrivateRedis::start(&dir).await.unwrap();
        let mut ca = connect_as(&a, redis.port()).await;
        let v: String = redis::cmd("GET")
            .arg(format!("{}k", a.key_prefix))
            .query_async(&mut ca)
            .await
            .unwrap();
        assert_eq!(v, "v");
        redis.stop().await.unwrap();
    }
}
