//! RESP2, the Redis protocol, as far as the gateway needs it: where a frame ends (so replies are
//! passed on whole and in order) and a client's command as its arguments. Frames are bounded
//! in size and nesting so a client cannot make the agent hold more than [`MAX_FRAME_BYTES`] for
//! one frame.

use bytes::{Bytes, BytesMut};

/// The largest frame (a command with its arguments, or a reply) the gateway passes on. Celery's
/// messages are a few kilobytes; a larger frame closes the connection.
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// The deepest nesting of arrays in a reply (`EXEC` of commands that return arrays is 2).
const MAX_DEPTH: usize = 8;
/// The most arguments one command may have.
const MAX_ARGS: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("Protocol error: {0}")]
    Protocol(&'static str),
    #[error("Protocol error: frame larger than {MAX_FRAME_BYTES} bytes")]
    TooLarge,
}

/// Where the line starting at `at` ends: the index of its `\r\n`, if it is all in `buf`.
fn line_end(buf: &[u8], at: usize) -> Result<Option<usize>, RespError> {
    let Some(rest) = buf.get(at..) else {
        return Ok(None);
    };
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(at + i)),
        // A header line is short; a long one without its end is not RESP.
        None if rest.len() > 64 * 1024 => Err(RespError::Protocol("line too long")),
        None => Ok(None),
    }
}

fn integer(line: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::Protocol("invalid length"))
}

/// The length of the complete frame at `at` in `buf` (`None`: not all there yet).
fn frame_end(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError::Protocol("nested too deep"));
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, at + 1)? else {
        return Ok(None);
    };
    let after = end + 2;
    match kind {
        b'+' | b'-' | b':' => Ok(Some(after)),
        b'$' => {
            let n = integer(&buf[at + 1..end])?;
            if n < 0 {
                return Ok(Some(after));
            }
            let n = usize::try_from(n).map_err(|_| RespError::TooLarge)?;
            if n > MAX_FRAME_BYTES {
                return Err(RespError::TooLarge);
            }
            let stop = after + n + 2;
            if buf.len() < stop {
                return Ok(None);
            }
            if &buf[after + n..stop] != b"\r\n" {
                return Err(RespError::Protocol("bulk string without its CRLF"));
            }
            Ok(Some(stop))
        }
        b'*' => {
            let n = integer(&buf[at + 1..end])?;
            let mut next = after;
            for _ in 0..n.max(0) {
                if next > MAX_FRAME_BYTES {
                    return Err(RespError::TooLarge);
                }
                match frame_end(buf, next, depth + 1)? {
                    Some(e) => next = e,
                    None => return Ok(None),
                }
            }
            Ok(Some(next))
        }
        _ => Err(RespError::Protocol("expected a RESP2 type byte")),
    }
}

/// Takes one whole frame off the front of `buf`, if one is there.
pub fn take_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, RespError> {
    match frame_end(buf, 0, 0)? {
        Some(n) if n > MAX_FRAME_BYTES => Err(RespError::TooLarge),
        Some(n) => Ok(Some(buf.split_to(n).freeze())),
        None if buf.len() > MAX_FRAME_BYTES => Err(RespError::TooLarge),
        None => Ok(None),
    }
}

/// A client's command: a whole frame that is an array of bulk strings, as Redis clients send
/// (inline commands are refused).
pub fn command_args(frame: &Bytes) -> Result<Vec<Bytes>, RespError> {
    let bad = RespError::Protocol("a command is an array of bulk strings");
    if frame.first() != Some(&b'*') {
        return Err(bad);
    }
    let end = line_end(frame, 1)?.ok_or(bad.clone())?;
    let n = integer(&frame[1..end])?;
    if !(1..=MAX_ARGS as i64).contains(&n) {
        return Err(bad);
    }
    let mut args = Vec::with_capacity(n as usize);
    let mut at = end + 2;
    for _ in 0..n {
        if frame.get(at) != Some(&b'$') {
            return Err(bad);
        }
        let line = line_end(frame, at + 1)?.ok_or(bad.clone())?;
        let len = usize::try_from(integer(&frame[at + 1..line])?).map_err(|_| bad.clone())?;
        let start = line + 2;
        if frame.len() < start + len + 2 {
            return Err(bad);
        }
        args.push(frame.slice(start..start + len));
        at = start + len + 2;
    }
    if at != frame.len() {
        return Err(bad);
    }
    Ok(args)
}

/// A command as a frame, for what the gateway sends upstream on its own.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// An error reply. Redis's replies start with a code (`ERR`, `NOPERM`, …); line breaks cannot
/// be in one, so they are replaced.
pub fn error_reply(message: &str) -> Bytes {
    let clean: String = message
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    Bytes::from(format!("-{clean}\r\n"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn take(s: &[u8]) -> Result<Option<Bytes>, RespError> {
        take_frame(&mut BytesMut::from(s))
    }

    #[test]
    fn whole_frames_are_taken_and_partial_ones_wait() {
        for whole in [
            &b"+OK\r\n"[..],
            b"-ERR no\r\n",
            b":42\r\n",
            b"$3\r\nabc\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n$0\r\n\r\n",
        ] {
            assert_eq!(take(whole).unwrap().as_deref(), Some(whole));
            for cut in 0..whole.len() {
                assert_eq!(take(&whole[..cut]).unwrap(), None, "{:?}", &whole[..cut]);
            }
        }
        // Two frames in a row come off one at a time.
        let mut buf = BytesMut::from(&b"+OK\r\n:1\r\n"[..]);
        assert_eq!(
            take_frame(&mut buf).unwrap().as_deref(),
            Some(&b"+OK\r\n"[..])
        );
        assert_eq!(
            take_frame(&mut buf).unwrap().as_deref(),
            Some(&b":1\r\n"[..])
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed_large_and_deep_frames_are_refused() {
        assert!(take(b"?x\r\n").is_err());
        assert!(take(b"$abc\r\n").is_err());
        assert!(take(b"$3\r\nabcde\r\n").is_err());
        assert_eq!(
            take(format!("${}\r\n", MAX_FRAME_BYTES + 1).as_bytes()),
            Err(RespError::TooLarge)
        );
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert!(take(deep.as_bytes()).is_err());
        assert!(
            take(&[b'+'; 70 * 1024]).is_err(),
            "a header line without an end"
        );
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let frame = Bytes::from(encode_command(&[b"SET", b"k", b"v\r\n"]));
        let args = command_args(&frame).unwrap();
        assert_eq!(args, vec![&b"SET"[..], b"k", b"v\r\n"]);
        for bad in [&b"PING\r\n"[..], b"*0\r\n", b"*1\r\n:1\r\n", b"+OK\r\n"] {
            assert!(
                command_args(&Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            &error_reply("ERR a\r\nb")[..],
            b"-ERR a  b\r\n",
            "no line break inside an error"
        );
    }
}
