//! The proxymap(8) protocol as a read-only client speaks it (Postfix's dict_proxy): after the
//! server's `{protocol=proxymap_protocol}` announcement, `open` asks whether a table is
//! approved and learns its implementation flags, and `lookup` asks for one key. Every request
//! names the table again (a proxymap process keeps no per-connection state).
//!
//! - `{request=open, table=<type:name>, flags=<instance flags>}` →
//!   `{status, flags=<the table's flags>}`
//! - `{request=lookup, table=<type:name>, flags=<instance and request flags>, key}` →
//!   `{status, value}`
//!
//! The table is named without its `proxy:` prefix (`hash:/etc/postfix/relay`).

use super::attr::{AttrError, AttrList, AttrMessage, AttrWriter, ScanMode};

/// `status` values of a proxymap reply (`PROXY_STAT_*`, dict_proxy.h).
pub mod proxy_status {
    /// The table is open, or the key was found.
    pub const OK: i32 = 0;
    /// The key is not in the table.
    pub const NOKEY: i32 = 1;
    /// The lookup failed for now (the table is unavailable to proxymap, a server is down).
    pub const RETRY: i32 = 2;
    /// The request was malformed.
    pub const BAD: i32 = 3;
    /// The table is not listed in proxy_read_maps.
    pub const DENY: i32 = 4;
    /// The table is misconfigured.
    pub const CONFIG: i32 = 5;
}

/// The dictionary flags that travel in requests and replies (dict.h).
pub mod dict_flags {
    /// A fixed-string table: match lists look up parent domains in it too.
    pub const FIXED: u32 = 1 << 4;
    /// A pattern table (regexp, pcre, cidr, ...).
    pub const PATTERN: u32 = 1 << 5;
    /// Take a lock around each access.
    pub const LOCK: u32 = 1 << 6;
    /// Check (and fold) keys as UTF-8 when SMTPUTF8 is on.
    pub const UTF8_REQUEST: u32 = 1 << 19;
    /// What match_list asks for when it opens a table (its DICT_FLAGS).
    pub const MATCH_LIST: u32 = LOCK | UTF8_REQUEST;
    /// The flags a requester may change between requests (DICT_FLAG_RQST_MASK): fold, lock,
    /// duplicate handling, sync update, the paranoid flags, UTF-8.
    pub const RQST_MASK: u32 = (1 << 14)
        | (1 << 15)
        | LOCK
        | (1 << 7)
        | (1 << 0)
        | (1 << 1)
        | (1 << 8)
        | (1 << 11)
        | (1 << 12)
        | (1 << 13)
        | UTF8_REQUEST;
    /// The flags the table itself sets (DICT_FLAG_IMPL_MASK): fixed, pattern, multi-writer.
    pub const IMPL_MASK: u32 = FIXED | PATTERN | (1 << 18);
    /// The flags that select a table instance (DICT_FLAG_INST_MASK): all others.
    pub const INST_MASK: u32 = !(IMPL_MASK | RQST_MASK);
}

/// The server's announcement.
pub const PROTOCOL: &str = "proxymap_protocol";

/// `{request=open, table, flags}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    pub table: Vec<u8>,
    /// The instance flags of the opener's dictionary flags.
    pub flags: u32,
}

/// `{request=lookup, table, flags, key}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRequest {
    pub table: Vec<u8>,
    /// The instance flags and the request flags.
    pub flags: u32,
    pub key: Vec<u8>,
}

impl AttrMessage for OpenRequest {
    fn write(&self, w: &mut AttrWriter) {
        w.str("request", b"open")
            .str("table", &self.table)
            .int("flags", self.flags)
            .end();
    }
}

impl AttrMessage for LookupRequest {
    fn write(&self, w: &mut AttrWriter) {
        w.str("request", b"lookup")
            .str("table", &self.table)
            .int("flags", self.flags)
            .str("key", &self.key)
            .end();
    }
}

/// A request as proxymap reads it (server side, for test peers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRequest {
    Open(OpenRequest),
    Lookup(LookupRequest),
}

impl ProxyRequest {
    /// Strict, as proxymap scans it.
    pub fn decode(list: &AttrList) -> Result<ProxyRequest, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        let request = r.str("request")?;
        let request = match request {
            b"open" => ProxyRequest::Open(OpenRequest {
                table: r.str("table")?.to_vec(),
                flags: r.int("flags")?,
            }),
            b"lookup" => ProxyRequest::Lookup(LookupRequest {
                table: r.str("table")?.to_vec(),
                flags: r.int("flags")?,
                key: r.str("key")?.to_vec(),
            }),
            other => {
                return Err(AttrError::UnexpectedValue {
                    name: "request".into(),
                    value: other.to_vec(),
                    expected: "open or lookup".into(),
                })
            }
        };
        r.end()?;
        Ok(request)
    }
}

impl AttrMessage for ProxyRequest {
    fn write(&self, w: &mut AttrWriter) {
        match self {
            ProxyRequest::Open(open) => open.write(w),
            ProxyRequest::Lookup(lookup) => lookup.write(w),
        }
    }
}

/// `{status, flags}`: the answer to `open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReply {
    pub status: i32,
    /// The table's own flags ([`dict_flags::IMPL_MASK`] is what the client keeps).
    pub flags: u32,
}

impl OpenReply {
    pub fn decode(list: &AttrList) -> Result<OpenReply, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        let reply = OpenReply {
            status: r.int_signed("status")?,
            flags: r.int("flags")?,
        };
        r.end()?;
        Ok(reply)
    }
}

impl AttrMessage for OpenReply {
    fn write(&self, w: &mut AttrWriter) {
        w.int_signed("status", self.status)
            .int("flags", self.flags)
            .end();
    }
}

/// `{status, value}`: the answer to `lookup` (an empty value unless found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupReply {
    pub status: i32,
    pub value: Vec<u8>,
}

impl LookupReply {
    pub fn decode(list: &AttrList) -> Result<LookupReply, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        let reply = LookupReply {
            status: r.int_signed("status")?,
            value: r.str("value")?.to_vec(),
        };
        r.end()?;
        Ok(reply)
    }
}

impl AttrMessage for LookupReply {
    fn write(&self, w: &mut AttrWriter) {
        w.int_signed("status", self.status)
            .str("value", &self.value)
            .end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::attr::AttrDecoder;

    fn list(bytes: &[u8]) -> AttrList {
        let mut lists = AttrDecoder::default().feed(bytes).unwrap();
        assert_eq!(lists.len(), 1);
        lists.remove(0)
    }

    #[test]
    fn masks_are_postfixs() {
        assert_eq!(dict_flags::MATCH_LIST, 0x80040);
        assert_eq!(dict_flags::MATCH_LIST & dict_flags::INST_MASK, 0);
        assert_eq!(dict_flags::RQST_MASK, 0x8f9c3);
        assert_eq!(dict_flags::IMPL_MASK, 0x40030);
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let open = OpenRequest {
            table: b"hash:/t".to_vec(),
            flags: 0,
        };
        assert_eq!(
            open.to_bytes(),
            b"request\0open\0table\0hash:/t\0flags\x000\0\0"
        );
        assert_eq!(
            ProxyRequest::decode(&list(&open.to_bytes())),
            Ok(ProxyRequest::Open(open))
        );
        let lookup = LookupRequest {
            table: b"hash:/t".to_vec(),
            flags: dict_flags::MATCH_LIST,
            key: b"d1.lab".to_vec(),
        };
        assert_eq!(
            ProxyRequest::decode(&list(&lookup.to_bytes())),
            Ok(ProxyRequest::Lookup(lookup))
        );
        let reply = OpenReply {
            status: proxy_status::DENY,
            flags: 0,
        };
        assert_eq!(OpenReply::decode(&list(&reply.to_bytes())), Ok(reply));
        let reply = LookupReply {
            status: proxy_status::NOKEY,
            value: Vec::new(),
        };
        assert_eq!(LookupReply::decode(&list(&reply.to_bytes())), Ok(reply));
        assert!(ProxyRequest::decode(&list(b"request\0update\0table\0t\0\0")).is_err());
        // Strict: an extra attribute is refused, as attr_scan with ATTR_FLAG_STRICT does.
        assert!(LookupReply::decode(&list(b"status\x000\0value\0x\0extra\0\0\0")).is_err());
        assert!(OpenReply::decode(&list(b"status\x000\0\0")).is_err());
    }
}
