//! The broker gateway with the clients environments really use: kombu (Celery's transport, with
//! the environment's `global_keyprefix`) and redis-py from an Airflow 3.3.2 runtime, against a
//! Redis 7 that refuses ACL commands, as the managed ones do.

use std::path::Path;

use hangar_data_plane::broker::{BrokerAdmin, BrokerUser};
use hangar_data_plane::broker_gateway::{BrokerGateway, USERS_KEY};
use hangar_data_plane::embedded::PrivateRedis;
use hangar_data_plane::runtime::python::RuntimeCache;
use hangar_tests::test_runtime_dir;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const CLIENTS: &str = r#"
import json, sys, time
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

url, prefix, other = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
options = {"global_keyprefix": prefix, "visibility_timeout": 1}
with Connection(url, transport_options=options) as conn:
    queue = conn.SimpleQueue("celery")
    queue.put({"n": 1})
    message = queue.get(timeout=10)
    out["queue"] = message.payload
    message.ack()
    # A message taken and never acknowledged comes back once its visibility timeout is over
    # (kombu restores it under its mutex, a redis-py lock).
    queue.put({"n": 2})
    taken = queue.get(timeout=10)
    time.sleep(1.5)
    conn.default_channel.qos.restore_visible(num=10)
    queue.close()
    # Fanout (publish, and subscribe to a pattern): the subscription may start after the first
    # publish.
    received = []
    exchange = Exchange("broadcast", type="fanout")
    def got(body, message):
        received.append(body)
        message.ack()
    try:
        with Consumer(conn, [Queue("listener", exchange, exclusive=True)], callbacks=[got]):
            for _ in range(20):
                Producer(conn).publish({"b": 1}, exchange=exchange, declare=[exchange])
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
                if received:
                    break
        out["fanout"] = received[:1]
    except redis.exceptions.ResponseError as e:
        out["fanout"] = f"{type(e).__name__}: {e}"
with Connection(url, transport_options=options) as conn:
    again = conn.SimpleQueue("celery").get(timeout=10)
    out["restored"] = again.payload
    again.ack()

r = redis.Redis.from_url(url)
lock = r.lock(prefix + "lock", timeout=10)
out["lock"] = [lock.acquire(blocking=False), lock.extend(5), lock.reacquire(), lock.release() is None]
for name, call in [
    ("keys", lambda: r.keys("*")),
    ("scan", lambda: r.scan(0)),
    ("other", lambda: r.get(other + "celery")),
    ("unprefixed", lambda: r.lpush("celery", "x")),
    ("flushall", lambda: r.flushall()),
    ("eval", lambda: r.eval("return redis.call('FLUSHALL')", 0)),
    ("other_lock", lambda: r.lock(other + "lock", timeout=10).acquire(blocking=False)),
    ("config", lambda: r.config_get("*")),
]:
    try:
        call()
        out[name] = "allowed"
    except redis.exceptions.ResponseError as e:
        out[name] = f"{type(e).__name__}: {e}"
print("RESULT " + json.dumps(out))
"#;

/// Runs the clients as `me` at `url`, and checks what they could and could not do and that
/// everything they made on the platform Redis (`admin_url`) is under `me`'s prefix. Fanout
/// (kombu subscribes to a channel pattern) works through the gateway; Redis's own ACL takes a
/// pattern only when it is literally one of the user's, so as an ACL user it is refused.
async fn clients_keep_to_their_own_keys(
    url: &secrecy::SecretString,
    me: &BrokerUser,
    other: &BrokerUser,
    admin_url: &secrecy::SecretString,
    fanout: bool,
) {
    let home = tempfile::tempdir().unwrap();
    let runtime = RuntimeCache::new(&test_runtime_dir(), Path::new("uv"))
        .with_python("/usr/bin/python3")
        .ensure(hangar_tenants::DEFAULT_AIRFLOW_VERSION, "")
        .await
        .unwrap();
    let out = tokio::process::Command::new(runtime.bin("python"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .arg("-c")
        .arg(CLIENTS)
        .arg(url.expose_secret())
        .arg(&me.key_prefix)
        .arg(&other.key_prefix)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| {
            panic!(
                "no result: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert_eq!(result["queue"], serde_json::json!({"n": 1}), "{result}");
    assert_eq!(result["restored"], serde_json::json!({"n": 2}), "{result}");
    if fanout {
        assert_eq!(result["fanout"], serde_json::json!([{"b": 1}]), "{result}");
    } else {
        let answer = result["fanout"].as_str().unwrap_or_default();
        assert!(answer.starts_with("NoPermissionError"), "{result}");
    }
    assert_eq!(
        result["lock"],
        serde_json::json!([true, true, true, true]),
        "{result}"
    );
    for refused in [
        "keys",
        "scan",
        "other",
        "unprefixed",
        "flushall",
        "eval",
        "other_lock",
        "config",
    ] {
        // redis-py raises a NOPERM reply as NoPermissionError (Redis's ACL refuses a script's
        // command as it runs, with a plain error).
        let answer = result[refused].as_str().unwrap_or_default();
        assert!(
            answer.starts_with("NoPermissionError")
                || (refused == "eval" && answer.contains("can't run this command")),
            "{refused}: {result}"
        );
    }

    // Everything the clients made is under the environment's prefix.
    let mut conn = redis::Client::open(admin_url.expose_secret())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.starts_with(&me.key_prefix)),
        "{keys:?}"
    );
    for key in &keys {
        assert!(
            key.starts_with(&me.key_prefix) || key == USERS_KEY,
            "{key} in {keys:?}"
        );
    }
}

fn two_users() -> (BrokerUser, BrokerUser) {
    (
        BrokerUser::for_environment(Uuid::new_v4(), BrokerUser::generate_password()),
        BrokerUser::for_environment(Uuid::new_v4(), BrokerUser::generate_password()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kombu_and_redis_py_use_their_own_keys_through_the_gateway_and_nothing_else() {
    let dir = tempfile::Builder::new()
        .prefix("hangar-broker-gw-")
        .tempdir()
        .unwrap();
    let redis = PrivateRedis::start_without_acl_commands(&dir.path().join("redis"))
        .await
        .unwrap();
    redis.stop_and_remove_after(std::process::id()).unwrap();
    let admin = BrokerAdmin::connect(&redis.admin_url())
        .await
        .unwrap()
        .through_gateway();
    let stop = CancellationToken::new();
    let gateway = BrokerGateway::connect(&redis.admin_url())
        .await
        .unwrap()
        .spawn("127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let (me, other) = two_users();
    admin.ensure_user(&me).await.unwrap();
    admin.ensure_user(&other).await.unwrap();
    let url = me.broker_url(&gateway.ip().to_string(), gateway.port(), admin.tls);
    assert!(url.expose_secret().starts_with("redis://"));
    clients_keep_to_their_own_keys(&url, &me, &other, &redis.admin_url(), true).await;
    stop.cancel();
}

/// The same clients as ACL users of a Redis that takes TLS only (a Redis of the platform's own
/// with ACL users and TLS; the managed ones go through the gateway).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kombu_and_redis_py_use_their_own_keys_as_acl_users_over_tls() {
    let dir = tempfile::Builder::new()
        .prefix("hangar-broker-acl-")
        .tempdir()
        .unwrap();
    let mut redis = PrivateRedis::start(&dir.path().join("redis"))
        .await
        .unwrap();
    redis.stop_and_remove_after(std::process::id()).unwrap();
    let (cert, key) = hangar_tests::self_signed_localhost().unwrap();
    redis.require_tls(&cert, &key).await.unwrap();
    let admin = BrokerAdmin::connect(&redis.admin_url()).await.unwrap();
    let (me, other) = two_users();
    admin.ensure_user(&me).await.unwrap();
    admin.ensure_user(&other).await.unwrap();
    let url = me.broker_url("127.0.0.1", redis.port(), admin.tls);
    assert!(url.expose_secret().starts_with("rediss://"));
    clients_keep_to_their_own_keys(&url, &me, &other, &redis.admin_url(), false).await;
}
