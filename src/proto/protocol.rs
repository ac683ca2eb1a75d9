//! The announcement each Postfix server sends right after accepting a connection,
//! `{protocol=NAME}`; the client reads and checks it before sending anything.

use super::attr::{AttrError, AttrList, AttrWriter, ScanMode};

/// Attribute name of the announcement.
pub const PROTOCOL_ATTR: &str = "protocol";

/// The protocols qmgr's peers announce (`MAIL_ATTR_PROTO_*` in mail_proto.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Delivery agents on `private/<transport>`.
    DeliveryRequest,
    /// trivial-rewrite on `private/rewrite`.
    TrivialRewrite,
    /// bounce(8) as `private/bounce`, `private/defer`, `private/trace`.
    DeliveryStatus,
    /// flush(8) on `public/flush`.
    QueueFlush,
    /// verify(8) on `private/verify`.
    AddressVerification,
    /// proxymap(8) on `private/proxymap`.
    Proxymap,
}

impl Protocol {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::DeliveryRequest => "delivery_request_protocol",
            Protocol::TrivialRewrite => "trivial_rewrite_protocol",
            Protocol::DeliveryStatus => "delivery_status_protocol",
            Protocol::QueueFlush => "queue_flush_protocol",
            // The misspelling is Postfix's own; peers compare it byte for byte.
            Protocol::AddressVerification => "address_verification_prrotocol",
            Protocol::Proxymap => super::proxymap::PROTOCOL,
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Self> {
        [
            Protocol::DeliveryRequest,
            Protocol::TrivialRewrite,
            Protocol::DeliveryStatus,
            Protocol::QueueFlush,
            Protocol::AddressVerification,
            Protocol::Proxymap,
        ]
        .into_iter()
        .find(|p| p.name().as_bytes() == name)
    }

    /// Appends the announcement list (server side; test peers use it).
    pub fn encode_announcement(self, out: &mut Vec<u8>) {
        let mut w = AttrWriter::with_buffer(std::mem::take(out));
        w.str(PROTOCOL_ATTR, self.name().as_bytes()).end();
        *out = w.into_bytes();
    }

    /// Checks a received announcement the way the clients do
    /// (`attr_scan(ATTR_FLAG_STRICT, RECV_ATTR_STREQ(protocol, NAME))`).
    pub fn check_announcement(self, list: &AttrList) -> Result<(), AttrError> {
        let mut reader = list.reader(ScanMode::Strict);
        reader.expect_str(PROTOCOL_ATTR, self.name())?;
        reader.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::attr::AttrDecoder;

    #[test]
    fn announcement_bytes() {
        let mut out = Vec::new();
        Protocol::DeliveryRequest.encode_announcement(&mut out);
        assert_eq!(out, b"protocol\0delivery_request_protocol\0\0");
        Protocol::AddressVerification.encode_announcement(&mut out);
        assert!(out.ends_with(b"protocol\0address_verification_prrotocol\0\0"));
    }

    #[test]
    fn check_announcement() {
        let list = AttrDecoder::default()
            .feed(b"protocol\0trivial_rewrite_protocol\0\0")
            .unwrap()
            .remove(0);
        assert_eq!(Protocol::TrivialRewrite.check_announcement(&list), Ok(()));
        let err = Protocol::DeliveryRequest
            .check_announcement(&list)
            .unwrap_err();
        assert_eq!(
            err.warning("private/smtp"),
            "unexpected protocol trivial_rewrite_protocol from private/smtp (expected: delivery_request_protocol)"
        );
        let extra = AttrList::from_pairs(&[("protocol", "trivial_rewrite_protocol"), ("x", "")]);
        assert!(Protocol::TrivialRewrite.check_announcement(&extra).is_err());
        assert!(Protocol::TrivialRewrite
            .check_announcement(&AttrList::new())
            .is_err());
        for p in [
            Protocol::DeliveryRequest,
            Protocol::TrivialRewrite,
            Protocol::DeliveryStatus,
            Protocol::QueueFlush,
            Protocol::AddressVerification,
            Protocol::Proxymap,
        ] {
            assert_eq!(Protocol::from_name(p.name().as_bytes()), Some(p));
        }
    }
}
