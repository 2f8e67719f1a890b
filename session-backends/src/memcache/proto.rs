//! memcached's meta protocol: the commands the store sends and the parser
//! of their replies.
//!
//! Every command carries an opaque token (`O<n>`) that memcached copies into
//! its reply, so a reply that does not answer the oldest outstanding
//! command shows a desynchronised stream instead of handing one session's
//! record to another request.

use std::fmt::Write as _;

/// The status code of a meta reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// `VA`: a value follows.
    Value,
    /// `HD`: success without a value.
    Done,
    /// `EN`: not found (`mg`).
    Miss,
    /// `NS`: not stored (`ms` in add mode over an existing item).
    NotStored,
    /// `EX`: the CAS value did not match.
    Exists,
    /// `NF`: not found (`ms` with CAS, `md`).
    NotFound,
    /// `MN`: the answer to `mn`.
    Noop,
}

/// One parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: Code,
    /// `c` flag: the item's CAS value.
    pub(crate) cas: Option<u64>,
    /// `t` flag: seconds left, -1 for none.
    pub(crate) ttl: Option<i64>,
    /// `O` flag: the opaque token of the command answered.
    pub(crate) opaque: Option<u32>,
    /// The value of a `VA` reply.
    pub(crate) value: Option<Vec<u8>>,
}

/// What a reply buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole reply, and how many bytes it took.
    Reply(Reply, usize),
    /// `SERVER_ERROR <message>` (the server stays in step: e.g. out of
    /// memory), and the bytes it took.
    ServerError(String, usize),
    /// Not a whole reply yet.
    Incomplete,
}

/// The stream cannot be trusted any more: `ERROR`, `CLIENT_ERROR`, or
/// bytes that are no meta reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Desync(pub(crate) String);

/// Longest reply line accepted (flags included); memcached's are far shorter.
const MAX_LINE: usize = 1024;
/// Largest value accepted in a reply: memcached's largest item size.
const MAX_VALUE: usize = 1 << 30;

/// Parses the reply at the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, Desync> {
    let Some(end) = buf.windows(2).take(MAX_LINE).position(|w| w == b"\r\n") else {
        if buf.len() >= MAX_LINE {
            return Err(Desync("reply line too long".into()));
        }
        return Ok(Parsed::Incomplete);
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| Desync("reply is not text".into()))?;
    let mut tokens = line.split(' ');
    let code = match tokens.next().unwrap_or("") {
        "VA" => Code::Value,
        "HD" => Code::Done,
        "EN" => Code::Miss,
        "NS" => Code::NotStored,
        "EX" => Code::Exists,
        "NF" => Code::NotFound,
        "MN" => Code::Noop,
        "SERVER_ERROR" => {
            let message = line.strip_prefix("SERVER_ERROR").unwrap_or("").trim();
            return Ok(Parsed::ServerError(message.to_owned(), end + 2));
        }
        _ => return Err(Desync(format!("unexpected reply {:?}", truncate(line)))),
    };
    let mut consumed = end + 2;
    let mut value = None;
    if code == Code::Value {
        let len: usize = tokens
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Desync("VA without a length".into()))?;
        // memcached's items stop at 1 GiB; a larger length is no reply (and
        // waiting for it would buffer without bound).
        if len > MAX_VALUE {
            return Err(Desync(format!("VA of {len} bytes")));
        }
        let data_end = consumed + len;
        if buf.len() < data_end + 2 {
            return Ok(Parsed::Incomplete);
        }
        if &buf[data_end..data_end + 2] != b"\r\n" {
            return Err(Desync("value not followed by CRLF".into()));
        }
        value = Some(buf[consumed..data_end].to_vec());
        consumed = data_end + 2;
    }
    let mut reply = Reply {
        code,
        cas: None,
        ttl: None,
        opaque: None,
        value,
    };
    for token in tokens {
        // Flags are one ASCII letter; anything else (even a multi-byte
        // character, which must not be split) is not a flag we read.
        let Some(&flag) = token.as_bytes().first().filter(|b| b.is_ascii()) else {
            continue;
        };
        let rest = &token[1..];
        let bad = || Desync(format!("bad flag {:?}", truncate(token)));
        match flag {
            b'c' => reply.cas = Some(rest.parse().map_err(|_| bad())?),
            b't' => reply.ttl = Some(rest.parse().map_err(|_| bad())?),
            b'O' => reply.opaque = Some(rest.parse().map_err(|_| bad())?),
            _ => {}
        }
    }
    Ok(Parsed::Reply(reply, consumed))
}

fn truncate(line: &str) -> &str {
    let mut end = line.len().min(40);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// How a `ms` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetMode {
    /// Unconditionally.
    Set,
    /// Only if absent (`ME`).
    Add,
    /// Only if the CAS value matches (`C<cas>`).
    Cas(u64),
}

/// Appends `mg <key> v c t O<opaque>`: value, CAS value and time left.
pub(crate) fn get(out: &mut Vec<u8>, prefix: &str, key: &str, opaque: u32) {
    line(out, format_args!("mg {prefix}{key} v c t O{opaque}"));
}

/// Appends `mg <key> T<ttl> O<opaque>`: moves the deadline, returns no value.
pub(crate) fn touch(out: &mut Vec<u8>, prefix: &str, key: &str, ttl: i64, opaque: u32) {
    line(out, format_args!("mg {prefix}{key} T{ttl} O{opaque}"));
}

/// Appends `md <key> O<opaque>`.
pub(crate) fn delete(out: &mut Vec<u8>, prefix: &str, key: &str, opaque: u32) {
    line(out, format_args!("md {prefix}{key} O{opaque}"));
}

/// Appends `mn`: answered `MN` once every command before it is answered.
pub(crate) fn noop(out: &mut Vec<u8>) {
    out.extend_from_slice(b"mn\r\n");
}

/// Appends `ms <key> <len> T<ttl> c [ME|C<cas>] O<opaque>` and the value.
pub(crate) fn set(
    out: &mut Vec<u8>,
    prefix: &str,
    key: &str,
    value: &[u8],
    ttl: i64,
    mode: SetMode,
    opaque: u32,
) {
    out.reserve(value.len() + 96);
    let len = value.len();
    match mode {
        SetMode::Set => line(
            out,
            format_args!("ms {prefix}{key} {len} T{ttl} c O{opaque}"),
        ),
        SetMode::Add => line(
            out,
            format_args!("ms {prefix}{key} {len} T{ttl} c ME O{opaque}"),
        ),
        SetMode::Cas(cas) => line(
            out,
            format_args!("ms {prefix}{key} {len} T{ttl} c C{cas} O{opaque}"),
        ),
    }
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `set auth 0 0 <len>` with `user password`: memcached's ASCII
/// authentication (`-Y`), the first command of a connection.
pub(crate) fn auth(out: &mut Vec<u8>, user: &str, password: &str) {
    let token = format!("{user} {password}");
    line(out, format_args!("set auth 0 0 {}", token.len()));
    out.extend_from_slice(token.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, args: std::fmt::Arguments<'_>) {
    struct Bytes<'a>(&'a mut Vec<u8>);
    impl std::fmt::Write for Bytes<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.extend_from_slice(s.as_bytes());
            Ok(())
        }
    }
    let _ = Bytes(out).write_fmt(args);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(buf: &[u8]) -> (Reply, usize) {
        match parse(buf).unwrap() {
            Parsed::Reply(r, n) => (r, n),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_the_replies_memcached_sends() {
        // Taken from memcached 1.6.18 answering the commands above.
        let (r, n) = reply(b"VA 2 c1 t60 O7\r\nhi\r\nEN O8\r\n");
        assert_eq!(
            (r.code, r.cas, r.ttl, r.opaque, r.value.as_deref(), n),
            (
                Code::Value,
                Some(1),
                Some(60),
                Some(7),
                Some(&b"hi"[..]),
                20
            )
        );
        let (r, _) = reply(b"EN O8\r\n");
        assert_eq!((r.code, r.opaque), (Code::Miss, Some(8)));
        let (r, _) = reply(b"HD c2 O9\r\n");
        assert_eq!((r.code, r.cas), (Code::Done, Some(2)));
        for (line, code) in [
            (&b"NS O1\r\n"[..], Code::NotStored),
            (b"EX O1\r\n", Code::Exists),
            (b"NF O1\r\n", Code::NotFound),
            (b"MN\r\n", Code::Noop),
            (b"VA 0 t-1 O1\r\n\r\n", Code::Value),
        ] {
            assert_eq!(reply(line).0.code, code);
        }
        assert_eq!(
            parse(b"SERVER_ERROR out of memory storing object\r\n").unwrap(),
            Parsed::ServerError("out of memory storing object".into(), 43)
        );
    }

    #[test]
    fn waits_for_a_whole_reply() {
        for partial in [&b""[..], b"VA 5 O1\r\nhel", b"VA 5 O1\r\nhello", b"HD c1"] {
            assert_eq!(parse(partial).unwrap(), Parsed::Incomplete, "{partial:?}");
        }
    }

    #[test]
    fn refuses_what_is_no_meta_reply() {
        for bad in [
            &b"ERROR\r\n"[..],
            b"CLIENT_ERROR bad command line format\r\n",
            b"VA x\r\n",
            // Found by the fuzz target: a length of usize::MAX overflowed.
            b"VA 00000000000000018446744073709551615\r\nhi\r\n",
            b"VA 1073741825 O1\r\n",
            b"VA 2 O1\r\nhiXX",
            b"HD cZ\r\n",
            b"\xff\xfe\r\n",
            &[b'A'; 2000],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_flag_starting_with_a_multibyte_character_is_skipped_not_split() {
        // Found by the fuzz target: splitting such a token panicked.
        let (r, _) = reply(b"EN \xc3\x9c2 O9\r\n");
        assert_eq!((r.code, r.opaque), (Code::Miss, Some(9)));
        assert_eq!(
            crate::internals::parse_memcached_replies(
                b"VA 2 {{{c160 O7\r\nhi\r\nEN \r \xc3\x9c2 O9\r\n"
            ),
            2
        );
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        get(&mut out, "p:", "k", 1);
        touch(&mut out, "p:", "k", 60, 2);
        delete(&mut out, "p:", "k", 3);
        set(&mut out, "p:", "k", b"hi", 60, SetMode::Cas(9), 4);
        set(&mut out, "p:", "k", b"", 5, SetMode::Add, 5);
        noop(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "mg p:k v c t O1\r\nmg p:k T60 O2\r\nmd p:k O3\r\n\
             ms p:k 2 T60 c C9 O4\r\nhi\r\nms p:k 0 T5 c ME O5\r\n\r\nmn\r\n"
        );
    }
}
