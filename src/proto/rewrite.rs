//! trivial-rewrite(8) requests qmgr makes on `private/rewrite`: address resolution for every
//! recipient, and the `local` rewrite of a redirect (`>`) address.

use super::attr::{AttrError, AttrList, AttrMessage, AttrWriter, ScanMode};

/// Resolve reply flag bits (`RESOLVE_FLAG_*`, `RESOLVE_CLASS_*` in resolve_clnt.h).
pub mod resolve_flags {
    pub const FINAL: u32 = 0x001;
    pub const ROUTED: u32 = 0x002;
    /// Bad address syntax.
    pub const ERROR: u32 = 0x004;
    /// The resolver itself failed.
    pub const FAIL: u32 = 0x008;
    pub const CLASS_LOCAL: u32 = 0x100;
    pub const CLASS_ALIAS: u32 = 0x200;
    pub const CLASS_VIRTUAL: u32 = 0x400;
    pub const CLASS_RELAY: u32 = 0x800;
    pub const CLASS_DEFAULT: u32 = 0x1000;
}

/// `request` value of a resolve request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveClass {
    /// `resolve`: normal delivery.
    Resolve,
    /// `verify`: the message carries the MTA_VRFY trace flag.
    Verify,
}

impl ResolveClass {
    pub fn name(self) -> &'static str {
        match self {
            ResolveClass::Resolve => "resolve",
            ResolveClass::Verify => "verify",
        }
    }
}

/// `{request=resolve|verify, sender, address}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRequest {
    pub class: ResolveClass,
    pub sender: Vec<u8>,
    /// Recipient in internal (unquoted) form.
    pub address: Vec<u8>,
}

impl ResolveRequest {
    /// Server-side decode (for test peers).
    pub fn decode(list: &AttrList) -> Result<Self, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        let class = match r.str("request")? {
            b"resolve" => ResolveClass::Resolve,
            b"verify" => ResolveClass::Verify,
            other => {
                return Err(AttrError::UnexpectedValue {
                    name: "request".to_string(),
                    value: other.to_vec(),
                    expected: "resolve".to_string(),
                })
            }
        };
        let request = ResolveRequest {
            class,
            sender: r.str("sender")?.to_vec(),
            address: r.str("address")?.to_vec(),
        };
        r.end()?;
        Ok(request)
    }
}

impl AttrMessage for ResolveRequest {
    fn write(&self, w: &mut AttrWriter) {
        write_resolve(w, self.class, &self.sender, &self.address);
    }
}

/// A [`ResolveRequest`] from borrowed fields.
pub fn write_resolve(w: &mut AttrWriter, class: ResolveClass, sender: &[u8], address: &[u8]) {
    w.str("request", class.name().as_bytes())
        .str("sender", sender)
        .str("address", address)
        .end();
}

/// A [`RewriteRequest`] from borrowed fields.
pub fn write_rewrite(w: &mut AttrWriter, rule: &[u8], address: &[u8]) {
    w.str("request", b"rewrite")
        .str("rule", rule)
        .str("address", address)
        .end();
}

/// `{flags, transport, nexthop, recipient, flags}`: two `flags` attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveReply {
    /// First `flags`: non-zero asks the client to disconnect after this reply.
    pub server_flags: u32,
    pub transport: Vec<u8>,
    pub nexthop: Vec<u8>,
    /// Possibly rewritten recipient.
    pub recipient: Vec<u8>,
    /// Second `flags`: [`resolve_flags`] bits.
    pub flags: u32,
}

impl ResolveReply {
    /// Decodes as `resolve_clnt` does (strict, five attributes).
    pub fn decode(list: &AttrList) -> Result<Self, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        let reply = ResolveReply {
            server_flags: r.int("flags")?,
            transport: r.str("transport")?.to_vec(),
            nexthop: r.str("nexthop")?.to_vec(),
            recipient: r.str("recipient")?.to_vec(),
            flags: r.int("flags")?,
        };
        r.end()?;
        Ok(reply)
    }
}

impl AttrMessage for ResolveReply {
    fn write(&self, w: &mut AttrWriter) {
        w.int("flags", self.server_flags)
            .str("transport", &self.transport)
            .str("nexthop", &self.nexthop)
            .str("recipient", &self.recipient)
            .int("flags", self.flags)
            .end();
    }
}

/// `{request=rewrite, rule, address}`; qmgr uses rule `local` for redirect addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteRequest {
    pub rule: Vec<u8>,
    /// Address in external (quoted) form.
    pub address: Vec<u8>,
}

impl RewriteRequest {
    /// Server-side decode (for test peers).
    pub fn decode(list: &AttrList) -> Result<Self, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        r.expect_str("request", "rewrite")?;
        let request = RewriteRequest {
            rule: r.str("rule")?.to_vec(),
            address: r.str("address")?.to_vec(),
        };
        r.end()?;
        Ok(request)
    }
}

impl AttrMessage for RewriteRequest {
    fn write(&self, w: &mut AttrWriter) {
        write_rewrite(w, &self.rule, &self.address);
    }
}

/// `{flags, address}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteReply {
    /// Non-zero asks the client to disconnect after this reply.
    pub server_flags: u32,
    pub address: Vec<u8>,
}

impl RewriteReply {
    pub fn decode(list: &AttrList) -> Result<Self, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        let reply = RewriteReply {
            server_flags: r.int("flags")?,
            address: r.str("address")?.to_vec(),
        };
        r.end()?;
        Ok(reply)
    }
}

impl AttrMessage for RewriteReply {
    fn write(&self, w: &mut AttrWriter) {
        w.int("flags", self.server_flags)
            .str("address", &self.address)
            .end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::attr::AttrDecoder;

    fn one(bytes: &[u8]) -> AttrList {
        AttrDecoder::default().feed(bytes).unwrap().remove(0)
    }

    #[test]
    fn resolve_request_round_trip() {
        let req = ResolveRequest {
            class: ResolveClass::Verify,
            sender: b"".to_vec(),
            address: b"a@b".to_vec(),
        };
        let bytes = req.to_bytes();
        assert_eq!(bytes, b"request\0verify\0sender\0\0address\0a@b\0\0");
        assert_eq!(ResolveRequest::decode(&one(&bytes)), Ok(req));
    }

    #[test]
    fn resolve_reply_needs_both_flags() {
        let short = one(b"flags\x000\0transport\0smtp\0nexthop\0h\0recipient\0r\0\0");
        assert_eq!(
            ResolveReply::decode(&short)
                .unwrap_err()
                .warning("private/rewrite"),
            "missing attribute flags in input from private/rewrite"
        );
    }

    #[test]
    fn rewrite_round_trip() {
        let req = RewriteRequest {
            rule: b"local".to_vec(),
            address: b"\"a b\"@c".to_vec(),
        };
        assert_eq!(RewriteRequest::decode(&one(&req.to_bytes())), Ok(req));
        let reply = RewriteReply {
            server_flags: 0,
            address: b"x@y".to_vec(),
        };
        assert_eq!(reply.to_bytes(), b"flags\x000\0address\0x@y\0\0");
        assert_eq!(RewriteReply::decode(&one(&reply.to_bytes())), Ok(reply));
    }
}
