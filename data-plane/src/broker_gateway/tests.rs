//! The gateway against a real Redis 7 that refuses ACL commands, as the managed ones do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::broker::{BrokerAdmin, BrokerUser};
use crate::embedded::PrivateRedis;
use redis::AsyncCommands;

struct Setup {
    _tmp: tempfile::TempDir,
    redis: PrivateRedis,
    admin: BrokerAdmin,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "kill $(cat {}/redis.pid 2>/dev/null) 2>/dev/null",
                self.redis.dir().display()
            ))
            .status();
    }
}

async fn setup_with(tls: bool, max_connections: usize, recheck: Duration) -> Setup {
    let tmp = tempfile::Builder::new()
        .prefix("hangar-broker-gw-")
        .tempdir()
        .unwrap();
    let mut redis = PrivateRedis::start_without_acl_commands(&tmp.path().join("redis"))
        .await
        .unwrap();
    if tls {
        redis.require_test_tls().await;
    }
    let admin = BrokerAdmin::connect(&redis.admin_url())
        .await
        .unwrap()
        .through_gateway();
    let stop = CancellationToken::new();
    let addr = BrokerGateway::connect(&redis.admin_url())
        .await
        .unwrap()
        .with_limits(max_connections, recheck)
        .spawn("127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    Setup {
        _tmp: tmp,
        redis,
        admin,
        addr,
        stop,
    }
}

async fn setup() -> Setup {
    setup_with(false, MAX_CONNECTIONS_PER_USER, RECHECK).await
}

impl Setup {
    async fn user(&self) -> BrokerUser {
        let user = BrokerUser::for_environment(Uuid::new_v4(), BrokerUser::generate_password());
        self.admin.ensure_user(&user).await.unwrap();
        user
    }

    fn url(&self, user: &BrokerUser) -> String {
        user.broker_url(&self.addr.ip().to_string(), self.addr.port(), RedisTls::Off)
            .expose_secret()
            .to_owned()
    }

    async fn connect(
        &self,
        user: &BrokerUser,
    ) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.url(user))?
            .get_multiplexed_async_connection()
            .await
    }

    /// A raw connection, logged in as `user`.
    async fn raw(&self, user: &BrokerUser) -> TcpStream {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        s.write_all(&resp::encode_command(&[
            b"AUTH",
            user.username.as_bytes(),
            user.password.expose_secret().as_bytes(),
        ]))
        .await
        .unwrap();
        assert_eq!(read_frames(&mut s, 1).await, vec!["+OK\r\n"]);
        s
    }

    async fn platform(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.admin_url().expose_secret())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

async fn read_frames(s: &mut TcpStream, n: usize) -> Vec<String> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(f) = take_frame(&mut buf).unwrap() {
            out.push(String::from_utf8_lossy(&f).into_owned());
        }
        if out.len() >= n {
            break;
        }
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_buf(&mut buf))
            .await
            .expect("a reply in time")
            .unwrap();
        assert!(read > 0, "closed after {out:?}");
    }
    out
}

fn is_err(r: redis::RedisResult<impl std::fmt::Debug>, code: &str) -> bool {
    matches!(&r, Err(e) if e.to_string().to_ascii_uppercase().contains(code))
}

/// redis-rs reports a `WRONGPASS` as a failed authentication (the raw tests read the reply).
fn login_refused(r: redis::RedisResult<impl std::fmt::Debug>) -> bool {
    is_err(r, "AUTHENTICATION")
}

#[tokio::test]
async fn the_platform_redis_refuses_acl_users_so_the_gateway_keeps_them() {
    let s = setup().await;
    // As on ElastiCache: the ACL way fails.
    let acl = BrokerAdmin::connect(&s.redis.admin_url()).await.unwrap();
    let user = BrokerUser::for_environment(Uuid::new_v4(), BrokerUser::generate_password());
    assert!(acl.ensure_user(&user).await.is_err());
    // The gateway's way keeps a digest, never the password.
    s.admin.ensure_user(&user).await.unwrap();
    let stored: String = s
        .platform()
        .await
        .hget(USERS_KEY, &user.username)
        .await
        .unwrap();
    assert_eq!(stored, password_digest(&user.password));
    assert!(!stored.contains(user.password.expose_secret()));
}

#[tokio::test]
async fn an_environment_uses_its_own_queues_and_nothing_else() {
    let s = setup().await;
    let (a, b) = (s.user().await, s.user().await);
    let mut ca = s.connect(&a).await.unwrap();
    let mut cb = s.connect(&b).await.unwrap();
    let qa = format!("{}celery", a.key_prefix);
    let qb = format!("{}celery", b.key_prefix);
    let _: i64 = ca.lpush(&qa, "task-a").await.unwrap();
    let _: i64 = cb.lpush(&qb, "task-b").await.unwrap();
    // The keys are on the platform Redis, under each prefix.
    let mut platform = s.platform().await;
    assert_eq!(platform.llen::<_, i64>(&qa).await.unwrap(), 1);
    // A blocking pop of its own queue works; another's, or no prefix at all, is refused.
    let popped: Option<(String, String)> = ca.brpop(&qa, 1.0).await.unwrap();
    assert_eq!(popped, Some((qa.clone(), "task-a".to_owned())));
    assert!(is_err(
        ca.brpop::<_, Option<(String, String)>>(&qb, 1.0).await,
        "NOPERM"
    ));
    assert!(is_err(ca.get::<_, Option<String>>(&qb).await, "NOPERM"));
    assert!(is_err(
        ca.get::<_, Option<String>>("celery").await,
        "NOPERM"
    ));
    assert!(is_err(
        ca.hget::<_, _, Option<String>>(USERS_KEY, &a.username)
            .await,
        "NOPERM"
    ));
    for cmd in [
        redis::cmd("FLUSHALL"),
        redis::cmd("KEYS").arg("*").clone(),
        redis::cmd("SCAN").arg(0).clone(),
        redis::cmd("EVAL")
            .arg("return redis.call('FLUSHALL')")
            .arg(0)
            .clone(),
        redis::cmd("CONFIG").arg("GET").arg("*").clone(),
        redis::cmd("SELECT").arg(1).clone(),
    ] {
        let r = cmd.query_async::<redis::Value>(&mut ca).await;
        assert!(r.is_err(), "{r:?}");
    }
    // B's queue is untouched, and A's connection still works after the refusals.
    assert_eq!(platform.llen::<_, i64>(&qb).await.unwrap(), 1);
    let _: () = ca.set(format!("{}k", a.key_prefix), "v").await.unwrap();
    // A transaction of its own keys goes through whole.
    let (n, v): (i64, String) = redis::pipe()
        .atomic()
        .lpush(&qa, "x")
        .get(format!("{}k", a.key_prefix))
        .query_async(&mut ca)
        .await
        .unwrap();
    assert_eq!((n, v.as_str()), (1, "v"));
}

#[tokio::test]
async fn logins_need_the_environments_own_password_and_a_live_user() {
    let s = setup().await;
    let (a, b) = (s.user().await, s.user().await);
    let wrong = BrokerUser {
        password: b.password.clone(),
        ..a.clone()
    };
    assert!(login_refused(s.connect(&wrong).await));
    let unknown = BrokerUser::for_environment(Uuid::new_v4(), a.password.clone());
    assert!(login_refused(s.connect(&unknown).await));
    // Without logging in, nothing but a login.
    let mut raw = TcpStream::connect(s.addr).await.unwrap();
    raw.write_all(&resp::encode_command(&[b"GET", a.key_prefix.as_bytes()]))
        .await
        .unwrap();
    raw.write_all(&resp::encode_command(&[b"AUTH", b"default", b""]))
        .await
        .unwrap();
    let replies = read_frames(&mut raw, 2).await;
    assert!(replies[0].starts_with("-NOAUTH"), "{replies:?}");
    assert!(replies[1].starts_with("-WRONGPASS"), "{replies:?}");
    // A removed user logs in no more, and its keys are gone.
    let mut ca = s.connect(&a).await.unwrap();
    let _: i64 = ca.lpush(format!("{}q", a.key_prefix), "m").await.unwrap();
    s.admin.remove_user(&a).await.unwrap();
    assert!(login_refused(s.connect(&a).await));
    let left: i64 = s
        .platform()
        .await
        .exists(format!("{}q", a.key_prefix))
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_removed_users_open_connections_are_closed() {
    let s = setup_with(false, MAX_CONNECTIONS_PER_USER, Duration::from_millis(200)).await;
    let a = s.user().await;
    let mut raw = s.raw(&a).await;
    s.admin.remove_user(&a).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn a_refused_command_answers_in_its_place_among_pipelined_replies() {
    let s = setup().await;
    let (a, b) = (s.user().await, s.user().await);
    let mut raw = s.raw(&a).await;
    let (qa, qb) = (format!("{}q", a.key_prefix), format!("{}q", b.key_prefix));
    let mut batch = Vec::new();
    for cmd in [
        resp::encode_command(&[b"LPUSH", qa.as_bytes(), b"1"]),
        resp::encode_command(&[b"LPUSH", qb.as_bytes(), b"1"]),
        resp::encode_command(&[b"SELECT", b"0"]),
        resp::encode_command(&[b"LPUSH", qa.as_bytes(), b"2"]),
        resp::encode_command(&[b"FLUSHALL"]),
        resp::encode_command(&[b"LLEN", qa.as_bytes()]),
    ] {
        batch.extend(cmd);
    }
    raw.write_all(&batch).await.unwrap();
    let replies = read_frames(&mut raw, 6).await;
    assert_eq!(replies[0], ":1\r\n");
    assert!(replies[1].starts_with("-NOPERM"), "{replies:?}");
    assert_eq!(replies[2], "+OK\r\n");
    assert_eq!(replies[3], ":2\r\n");
    assert!(replies[4].starts_with("-NOPERM"), "{replies:?}");
    assert_eq!(replies[5], ":2\r\n");
    let exists: i64 = s.platform().await.exists(&qb).await.unwrap();
    assert_eq!(exists, 0, "the refused push never reached Redis");
}

#[tokio::test]
async fn subscriptions_to_its_own_channels_get_their_messages() {
    let s = setup().await;
    let (a, b) = (s.user().await, s.user().await);
    let mut raw = s.raw(&a).await;
    let channel = format!("{}/0.celery.pidbox", a.key_prefix);
    let pattern = format!("{}/0.celeryev*", a.key_prefix);
    let mut batch = resp::encode_command(&[b"SUBSCRIBE", channel.as_bytes()]);
    batch.extend(resp::encode_command(&[b"PSUBSCRIBE", pattern.as_bytes()]));
    raw.write_all(&batch).await.unwrap();
    let confirmations = read_frames(&mut raw, 2).await;
    assert!(confirmations[0].contains("subscribe"), "{confirmations:?}");
    let mut publisher = s.connect(&a).await.unwrap();
    let got: i64 = publisher.publish(&channel, "hello").await.unwrap();
    assert_eq!(got, 1);
    let _: i64 = publisher
        .publish(format!("{}/0.celeryev.x", a.key_prefix), "event")
        .await
        .unwrap();
    let messages = read_frames(&mut raw, 2).await;
    assert!(messages[0].contains("hello"), "{messages:?}");
    assert!(
        messages[1].contains("pmessage") && messages[1].contains("event"),
        "{messages:?}"
    );
    // Another environment cannot publish to it, nor listen to everything.
    let mut other = s.connect(&b).await.unwrap();
    assert!(is_err(
        other.publish::<_, _, i64>(&channel, "x").await,
        "NOPERM"
    ));
    let mut raw_b = s.raw(&b).await;
    raw_b
        .write_all(&resp::encode_command(&[b"PSUBSCRIBE", b"*"]))
        .await
        .unwrap();
    assert!(read_frames(&mut raw_b, 1).await[0].starts_with("-NOPERM"));
}

#[tokio::test]
async fn an_environments_connections_are_bounded() {
    let s = setup_with(false, 2, RECHECK).await;
    let (a, b) = (s.user().await, s.user().await);
    let _one = s.raw(&a).await;
    let _two = s.raw(&a).await;
    let mut third = TcpStream::connect(s.addr).await.unwrap();
    third
        .write_all(&resp::encode_command(&[
            b"AUTH",
            a.username.as_bytes(),
            a.password.expose_secret().as_bytes(),
        ]))
        .await
        .unwrap();
    assert!(read_frames(&mut third, 1).await[0].starts_with("-ERR max number of clients"));
    // Another environment is not affected, and a closed connection frees its place.
    let _b = s.raw(&b).await;
    drop(_one);
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(c) = s.connect(&a).await {
            again = Some(c);
            break;
        }
    }
    assert!(again.is_some());
}

#[tokio::test]
async fn the_gateway_reaches_a_redis_that_takes_tls_only() {
    let s = setup_with(true, MAX_CONNECTIONS_PER_USER, RECHECK).await;
    assert!(s.redis.admin_url().expose_secret().starts_with("rediss://"));
    let a = s.user().await;
    let mut ca = s.connect(&a).await.unwrap();
    let q = format!("{}celery", a.key_prefix);
    let _: i64 = ca.lpush(&q, "m").await.unwrap();
    let popped: Option<(String, String)> = ca.brpop(&q, 1.0).await.unwrap();
    assert_eq!(popped, Some((q, "m".to_owned())));
}

#[tokio::test]
async fn a_transaction_with_a_refused_command_fails_whole_as_on_redis() {
    let s = setup().await;
    let (a, b) = (s.user().await, s.user().await);
    let mut raw = s.raw(&a).await;
    let (qa, qb) = (format!("{}q", a.key_prefix), format!("{}q", b.key_prefix));
    let mut batch = Vec::new();
    for cmd in [
        resp::encode_command(&[b"MULTI"]),
        resp::encode_command(&[b"LPUSH", qa.as_bytes(), b"1"]),
        resp::encode_command(&[b"GET", qb.as_bytes()]),
        resp::encode_command(&[b"EXEC"]),
        resp::encode_command(&[b"LLEN", qa.as_bytes()]),
        resp::encode_command(&[b"MULTI"]),
        resp::encode_command(&[b"LPUSH", qa.as_bytes(), b"2"]),
        resp::encode_command(&[b"EXEC"]),
    ] {
        batch.extend(cmd);
    }
    raw.write_all(&batch).await.unwrap();
    let replies = read_frames(&mut raw, 8).await;
    assert_eq!(replies[..2], ["+OK\r\n", "+QUEUED\r\n"], "{replies:?}");
    assert!(replies[2].starts_with("-NOPERM"), "{replies:?}");
    assert!(replies[3].starts_with("-EXECABORT"), "{replies:?}");
    assert_eq!(
        replies[4], ":0\r\n",
        "nothing of the failed transaction ran"
    );
    assert_eq!(replies[5..], ["+OK\r\n", "+QUEUED\r\n", "*1\r\n:1\r\n"]);
}

#[tokio::test]
async fn a_connection_may_send_little_before_it_logs_in() {
    let s = setup().await;
    let mut raw = TcpStream::connect(s.addr).await.unwrap();
    let mut big = b"*3\r\n$4\r\nAUTH\r\n$100000\r\n".to_vec();
    big.extend(vec![b'x'; 70 * 1024]);
    let _ = raw.write_all(&big).await;
    let reply = read_frames(&mut raw, 1).await;
    assert!(reply[0].starts_with("-ERR too much"), "{reply:?}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(_)) | Ok(Err(_))), "not closed");
}

#[tokio::test]
async fn logins_survive_the_gateways_own_connection_being_dropped() {
    let s = setup().await;
    let a = s.user().await;
    let _ = s.connect(&a).await.unwrap();
    // Every client of the platform Redis is cut off, the gateway's lookups included (as when
    // Redis restarts).
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut s.platform().await)
        .await
        .unwrap();
    let mut again = s.connect(&a).await.unwrap();
    let _: i64 = again
        .lpush(format!("{}q", a.key_prefix), "m")
        .await
        .unwrap();
}
