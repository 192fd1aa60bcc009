//! What an environment may send through the gateway, pure: the commands Celery's Redis
//! transport (kombu, with its `global_keyprefix`) uses and a few harmless ones, each with
//! where its keys or channels are, and every key and channel under the environment's own
//! prefix, as the ACL rules of a broker user say on a Redis that has ACL users. Anything else
//! (keyspace-wide, admin or unknown commands, scripts but redis-py's lock scripts) is refused.

use bytes::Bytes;
use sha1::{Digest, Sha1};

/// The Lua scripts of redis-py's `Lock` (release, extend, reacquire; the same from redis-py 4
/// to 7), by SHA-1: kombu releases its restore mutex with one. Each reads and writes only its
/// one key (`KEYS[1]`), which must be the environment's; Redis runs a script as the gateway's
/// admin, so no other script may run.
const LOCK_SCRIPTS: [&str; 3] = [
    "c3f8721cbb97f72bc19e972846bd7aaf91901658",
    "a4e8783852e6b949f9ef3a97212805108459a890",
    "1cac51482acf5858da00f6d685d68f886cd6b6b2",
];

fn sha1_hex(body: &[u8]) -> String {
    Sha1::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The verdict on a script run (`EVAL body|EVALSHA sha`, `numkeys`, keys, args): one of the
/// lock scripts on one key of the environment's.
fn script(args: &[Bytes], prefix: &str) -> Verdict {
    let cmd = name(&args[0]);
    let Some(script) = args.get(1) else {
        return Verdict::Refuse(format!(
            "ERR wrong number of arguments for '{}' command",
            cmd.to_ascii_lowercase()
        ));
    };
    let sha = if cmd == "EVALSHA" {
        String::from_utf8_lossy(script).to_ascii_lowercase()
    } else {
        sha1_hex(script)
    };
    if !LOCK_SCRIPTS.contains(&sha.as_str()) {
        return Verdict::Refuse(format!(
            "NOPERM only redis-py's lock scripts may run through the broker gateway ({cmd})"
        ));
    }
    match (args.get(2).map(|n| &n[..]), args.get(3)) {
        (Some(b"1"), Some(key)) if key.starts_with(prefix.as_bytes()) => {
            Verdict::Forward { replies: 1 }
        }
        (Some(b"1"), Some(key)) => Verdict::Refuse(format!(
            "NOPERM this environment has no permissions to access the '{}' key",
            String::from_utf8_lossy(key)
        )),
        _ => Verdict::Refuse(format!(
            "NOPERM a lock script ({cmd}) takes exactly one key"
        )),
    }
}

/// Where a command's keys (or channels) are among its arguments (the name is argument 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// No key.
    None,
    /// Argument 1.
    First,
    /// Arguments 1 and 2.
    FirstTwo,
    /// Every argument from 1.
    All,
    /// Every argument from 1 but the last (a blocking pop's timeout).
    AllButLast,
    /// Arguments 1, 3, 5, … (key-value pairs).
    Pairs,
    /// Channels or patterns: every argument from 1 (none is fine for the `UN` forms).
    Channels,
}

/// The commands an environment may use, with the fewest arguments each needs.
const COMMANDS: &[(&str, Keys, usize)] = &[
    ("PING", Keys::None, 1),
    ("ECHO", Keys::None, 2),
    ("TIME", Keys::None, 1),
    ("MULTI", Keys::None, 1),
    ("EXEC", Keys::None, 1),
    ("DISCARD", Keys::None, 1),
    ("UNWATCH", Keys::None, 1),
    ("WATCH", Keys::All, 2),
    ("EXISTS", Keys::All, 2),
    ("DEL", Keys::All, 2),
    ("UNLINK", Keys::All, 2),
    ("TOUCH", Keys::All, 2),
    ("MGET", Keys::All, 2),
    ("MSET", Keys::Pairs, 3),
    ("TYPE", Keys::First, 2),
    ("EXPIRE", Keys::First, 3),
    ("PEXPIRE", Keys::First, 3),
    ("EXPIREAT", Keys::First, 3),
    ("PERSIST", Keys::First, 2),
    ("TTL", Keys::First, 2),
    ("PTTL", Keys::First, 2),
    ("GET", Keys::First, 2),
    ("SET", Keys::First, 3),
    ("SETNX", Keys::First, 3),
    ("SETEX", Keys::First, 4),
    ("PSETEX", Keys::First, 4),
    ("GETDEL", Keys::First, 2),
    ("GETSET", Keys::First, 3),
    ("INCR", Keys::First, 2),
    ("INCRBY", Keys::First, 3),
    ("DECR", Keys::First, 2),
    ("DECRBY", Keys::First, 3),
    ("LPUSH", Keys::First, 3),
    ("RPUSH", Keys::First, 3),
    ("LPOP", Keys::First, 2),
    ("RPOP", Keys::First, 2),
    ("LLEN", Keys::First, 2),
    ("LRANGE", Keys::First, 4),
    ("LINDEX", Keys::First, 3),
    ("LREM", Keys::First, 4),
    ("LTRIM", Keys::First, 4),
    ("BRPOP", Keys::AllButLast, 3),
    ("BLPOP", Keys::AllButLast, 3),
    ("RPOPLPUSH", Keys::FirstTwo, 3),
    ("BRPOPLPUSH", Keys::FirstTwo, 4),
    ("LMOVE", Keys::FirstTwo, 5),
    ("BLMOVE", Keys::FirstTwo, 6),
    ("SADD", Keys::First, 3),
    ("SREM", Keys::First, 3),
    ("SMEMBERS", Keys::First, 2),
    ("SISMEMBER", Keys::First, 3),
    ("SCARD", Keys::First, 2),
    ("HSET", Keys::First, 4),
    ("HSETNX", Keys::First, 4),
    ("HMSET", Keys::First, 4),
    ("HGET", Keys::First, 3),
    ("HMGET", Keys::First, 3),
    ("HDEL", Keys::First, 3),
    ("HEXISTS", Keys::First, 3),
    ("HGETALL", Keys::First, 2),
    ("HKEYS", Keys::First, 2),
    ("HVALS", Keys::First, 2),
    ("HLEN", Keys::First, 2),
    ("HINCRBY", Keys::First, 4),
    ("ZADD", Keys::First, 4),
    ("ZREM", Keys::First, 3),
    ("ZCARD", Keys::First, 2),
    ("ZSCORE", Keys::First, 3),
    ("ZRANGE", Keys::First, 4),
    ("ZRANGEBYSCORE", Keys::First, 4),
    ("ZREVRANGEBYSCORE", Keys::First, 4),
    ("ZREMRANGEBYSCORE", Keys::First, 4),
    ("PUBLISH", Keys::First, 3),
    ("SUBSCRIBE", Keys::Channels, 2),
    ("PSUBSCRIBE", Keys::Channels, 2),
    ("UNSUBSCRIBE", Keys::Channels, 1),
    ("PUNSUBSCRIBE", Keys::Channels, 1),
];

/// `CLIENT` subcommands that touch only the caller's own connection (redis-py names itself).
const CLIENT_SUBCOMMANDS: &[&str] = &["SETNAME", "GETNAME", "SETINFO", "ID"];

/// What the gateway does with one command of an authenticated connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it upstream; `replies` is how many replies it gets (a subscription has one per
    /// channel).
    Forward { replies: usize },
    /// Answer it here with this reply.
    Answer(Bytes),
    /// Answer `+OK` and close the connection.
    Quit,
    /// Refuse it with this error (the connection stays open).
    Refuse(String),
}

fn name(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

/// The verdict on `args` (a whole command) from an environment whose keys and channels all
/// start with `prefix`.
pub fn check(args: &[Bytes], prefix: &str) -> Verdict {
    let Some(first) = args.first() else {
        return Verdict::Refuse("ERR empty command".to_owned());
    };
    let cmd = name(first);
    match cmd.as_str() {
        "QUIT" => return Verdict::Quit,
        // Each environment has database 0 of the gateway (its prefix on the platform's).
        "SELECT" => {
            return match args.get(1).map(|a| &a[..]) {
                Some(b"0") if args.len() == 2 => Verdict::Answer(Bytes::from_static(b"+OK\r\n")),
                _ => Verdict::Refuse("ERR DB index is out of range (only 0)".to_owned()),
            }
        }
        "AUTH" => {
            return Verdict::Refuse(
                "ERR this connection is already authenticated; open another to change user"
                    .to_owned(),
            )
        }
        "HELLO" => {
            return Verdict::Refuse(
                "NOPROTO the broker gateway speaks RESP2 only (no HELLO)".to_owned(),
            )
        }
        "EVAL" | "EVALSHA" => return script(args, prefix),
        "SCRIPT" => {
            let sub = args.get(1).map(|s| name(s)).unwrap_or_default();
            return match (sub.as_str(), args.get(2)) {
                ("EXISTS", Some(_)) => Verdict::Forward { replies: 1 },
                ("LOAD", Some(body))
                    if args.len() == 3 && LOCK_SCRIPTS.contains(&sha1_hex(body).as_str()) =>
                {
                    Verdict::Forward { replies: 1 }
                }
                _ => Verdict::Refuse(format!(
                    "NOPERM SCRIPT {sub} is not allowed through the broker gateway (only loading redis-py's lock scripts)"
                )),
            };
        }
        "CLIENT" => {
            let sub = args.get(1).map(|s| name(s)).unwrap_or_default();
            return if CLIENT_SUBCOMMANDS.contains(&sub.as_str()) {
                Verdict::Forward { replies: 1 }
            } else {
                Verdict::Refuse(format!(
                    "NOPERM CLIENT {sub} is not allowed through the broker gateway"
                ))
            };
        }
        _ => {}
    }
    let Some(&(_, keys, min_args)) = COMMANDS.iter().find(|(c, _, _)| *c == cmd) else {
        return Verdict::Refuse(format!(
            "NOPERM {cmd} is not allowed through the broker gateway"
        ));
    };
    if args.len() < min_args {
        return Verdict::Refuse(format!(
            "ERR wrong number of arguments for '{}' command",
            cmd.to_ascii_lowercase()
        ));
    }
    let rest = &args[1..];
    let checked: Vec<&Bytes> = match keys {
        Keys::None => Vec::new(),
        Keys::First => rest.iter().take(1).collect(),
        Keys::FirstTwo => rest.iter().take(2).collect(),
        Keys::All | Keys::Channels => rest.iter().collect(),
        Keys::AllButLast => rest[..rest.len() - 1].iter().collect(),
        Keys::Pairs => {
            if rest.len() % 2 != 0 {
                return Verdict::Refuse(format!(
                    "ERR wrong number of arguments for '{}' command",
                    cmd.to_ascii_lowercase()
                ));
            }
            rest.iter().step_by(2).collect()
        }
    };
    // The prefix holds no glob character, so a pattern that starts with it matches only
    // channels under it.
    if let Some(outside) = checked.iter().find(|k| !k.starts_with(prefix.as_bytes())) {
        let what = if keys == Keys::Channels || cmd == "PUBLISH" {
            "channel"
        } else {
            "key"
        };
        return Verdict::Refuse(format!(
            "NOPERM this environment has no permissions to access the '{}' {what}",
            String::from_utf8_lossy(outside)
        ));
    }
    let replies = match (keys, cmd.as_str()) {
        // One confirmation per channel (and one in all when unsubscribing from everything,
        // whose count the server alone knows: nothing is waited for).
        (Keys::Channels, "UNSUBSCRIBE" | "PUNSUBSCRIBE") if rest.is_empty() => 0,
        (Keys::Channels, _) => rest.len(),
        _ => 1,
    };
    Verdict::Forward { replies }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rstest::rstest;

    const P: &str = "hangar:0123:";

    fn verdict(args: &[&str]) -> Verdict {
        let args: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        check(&args, P)
    }

    fn refused(v: &Verdict, code: &str) -> bool {
        matches!(v, Verdict::Refuse(m) if m.starts_with(code))
    }

    #[rstest]
    #[case(&["LPUSH", "hangar:0123:default", "m"])]
    #[case(&["brpop", "hangar:0123:a", "hangar:0123:b", "1"])]
    #[case(&["SET", "hangar:0123:unacked_mutex", "x", "NX", "EX", "300"])]
    #[case(&["DEL", "hangar:0123:a", "hangar:0123:b"])]
    #[case(&["MSET", "hangar:0123:a", "1", "hangar:0123:b", "2"])]
    #[case(&["RPOPLPUSH", "hangar:0123:a", "hangar:0123:b"])]
    #[case(&["ZREVRANGEBYSCORE", "hangar:0123:unacked_index", "+inf", "-inf"])]
    #[case(&["PUBLISH", "hangar:0123:/0.celeryev", "m"])]
    #[case(&["PSUBSCRIBE", "hangar:0123:/0.celery.pidbox*"])]
    #[case(&["MULTI"])]
    #[case(&["EXEC"])]
    #[case(&["PING"])]
    #[case(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"])]
    #[case(&["EVALSHA", "c3f8721cbb97f72bc19e972846bd7aaf91901658", "1", "hangar:0123:unacked_mutex", "t"])]
    #[case(&["evalsha", "A4E8783852E6B949F9EF3A97212805108459A890", "1", "hangar:0123:m", "t", "1000", "0"])]
    #[case(&["SCRIPT", "EXISTS", "c3f8721cbb97f72bc19e972846bd7aaf91901658"])]
    fn an_environments_own_keys_and_channels_pass(#[case] args: &[&str]) {
        assert!(
            matches!(verdict(args), Verdict::Forward { .. }),
            "{args:?}: {:?}",
            verdict(args)
        );
    }

    #[rstest]
    #[case(&["GET", "hangar:9999:secret"])]
    #[case(&["LPUSH", "celery", "m"])]
    #[case(&["BRPOP", "hangar:0123:a", "hangar:9999:b", "1"])]
    #[case(&["DEL", "hangar:0123:a", "hangar:9999:b"])]
    #[case(&["MSET", "hangar:0123:a", "1", "other", "2"])]
    #[case(&["RPOPLPUSH", "hangar:0123:a", "hangar:9999:b"])]
    #[case(&["PUBLISH", "hangar:9999:/0.celeryev", "m"])]
    #[case(&["SUBSCRIBE", "hangar:0123:x", "hangar:9999:y"])]
    #[case(&["PSUBSCRIBE", "*"])]
    #[case(&["PSUBSCRIBE", "hangar:*"])]
    #[case(&["GET", "hangar:broker-users"])]
    fn keys_and_channels_outside_the_prefix_are_refused(#[case] args: &[&str]) {
        assert!(
            refused(&verdict(args), "NOPERM"),
            "{args:?}: {:?}",
            verdict(args)
        );
    }

    #[rstest]
    #[case(&["FLUSHALL"])]
    #[case(&["flushdb"])]
    #[case(&["KEYS", "*"])]
    #[case(&["SCAN", "0"])]
    #[case(&["RANDOMKEY"])]
    #[case(&["EVAL", "return redis.call('FLUSHALL')", "0"])]
    #[case(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "hangar:0123:a"])]
    #[case(&["EVALSHA", "abc", "0"])]
    #[case(&["EVALSHA", "c3f8721cbb97f72bc19e972846bd7aaf91901658", "1", "hangar:9999:lock", "t"])]
    #[case(&["EVALSHA", "c3f8721cbb97f72bc19e972846bd7aaf91901658", "0", "t"])]
    #[case(&["EVALSHA", "C3F8721CBB97F72BC19E972846BD7AAF91901658", "2", "hangar:0123:a", "hangar:9999:b"])]
    #[case(&["SCRIPT", "LOAD", "return redis.call('FLUSHALL')"])]
    #[case(&["SCRIPT", "FLUSH"])]
    #[case(&["SCRIPT", "KILL"])]
    #[case(&["FCALL", "f", "0"])]
    #[case(&["CONFIG", "GET", "*"])]
    #[case(&["ACL", "LIST"])]
    #[case(&["MONITOR"])]
    #[case(&["CLIENT", "LIST"])]
    #[case(&["CLIENT", "KILL", "ID", "1"])]
    #[case(&["DEBUG", "SLEEP", "1"])]
    #[case(&["SHUTDOWN"])]
    #[case(&["RESET"])]
    #[case(&["MIGRATE", "h", "1", "hangar:0123:a", "0", "1"])]
    #[case(&["OBJECT", "ENCODING", "hangar:0123:a"])]
    #[case(&["PUBSUB", "CHANNELS"])]
    #[case(&["SORT", "hangar:0123:a", "BY", "other*"])]
    fn keyspace_wide_scripting_and_admin_commands_are_refused(#[case] args: &[&str]) {
        assert!(
            refused(&verdict(args), "NOPERM"),
            "{args:?}: {:?}",
            verdict(args)
        );
    }

    #[test]
    fn connection_commands_are_answered_here() {
        assert_eq!(
            verdict(&["SELECT", "0"]),
            Verdict::Answer(Bytes::from_static(b"+OK\r\n"))
        );
        assert!(refused(&verdict(&["SELECT", "1"]), "ERR"));
        assert!(refused(&verdict(&["AUTH", "u", "p"]), "ERR"));
        assert!(refused(&verdict(&["HELLO", "3"]), "NOPROTO"));
        assert_eq!(verdict(&["quit"]), Verdict::Quit);
    }

    #[test]
    fn missing_arguments_are_an_error_not_a_pass() {
        for args in [&["GET"][..], &["BRPOP", "1"], &["MSET", "hangar:0123:a"]] {
            assert!(
                refused(&verdict(args), "ERR"),
                "{args:?}: {:?}",
                verdict(args)
            );
        }
    }

    #[test]
    fn subscriptions_wait_for_one_reply_per_channel() {
        assert_eq!(
            verdict(&["SUBSCRIBE", "hangar:0123:a", "hangar:0123:b"]),
            Verdict::Forward { replies: 2 }
        );
        assert_eq!(verdict(&["UNSUBSCRIBE"]), Verdict::Forward { replies: 0 });
        assert_eq!(
            verdict(&["LPUSH", "hangar:0123:a", "x", "y"]),
            Verdict::Forward { replies: 1 }
        );
    }
}
