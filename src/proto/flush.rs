//! The request qmgr sends to flush(8) on `public/flush` (flush_clnt's flush_add) and its
//! `{status}` reply.

use super::attr::{AttrError, AttrList, AttrMessage, AttrWriter, ScanMode};

/// `status` values of a flush(8) reply (`FLUSH_STAT_*`, flush_clnt.h).
pub mod flush_status {
    pub const FAIL: i32 = -1;
    pub const OK: i32 = 0;
    pub const BAD: i32 = 3;
    /// The site is not eligible (not in fast_flush_domains).
    pub const DENY: i32 = 4;
}

/// `{request=add, site, queue_id}`: append the queue id to the site's fast-flush log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushAdd {
    /// The recipient's domain, as it appears after the last `@`.
    pub site: Vec<u8>,
    pub queue_id: Vec<u8>,
}

impl FlushAdd {
    /// Server-side decode (for test peers), strict as flush(8) reads it.
    pub fn decode(list: &AttrList) -> Result<Self, AttrError> {
        let mut r = list.reader(ScanMode::Strict);
        r.expect_str("request", "add")?;
        let request = FlushAdd {
            site: r.str("site")?.to_vec(),
            queue_id: r.str("queue_id")?.to_vec(),
        };
        r.end()?;
        Ok(request)
    }
}

impl AttrMessage for FlushAdd {
    fn write(&self, w: &mut AttrWriter) {
        w.str("request", b"add")
            .str("site", &self.site)
            .str("queue_id", &self.queue_id)
            .end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::attr::AttrDecoder;
    use crate::proto::bounce::StatusReply;

    #[test]
    fn add_round_trips() {
        let request = FlushAdd {
            site: b"d1.lab".to_vec(),
            queue_id: b"4FJ3x1Zk2Bz9".to_vec(),
        };
        let bytes = request.to_bytes();
        assert_eq!(
            bytes,
            b"request\0add\0site\0d1.lab\0queue_id\x004FJ3x1Zk2Bz9\0\0"
        );
        let list = AttrDecoder::default().feed(&bytes).unwrap().remove(0);
        assert_eq!(FlushAdd::decode(&list), Ok(request));
    }

    #[test]
    fn reply_is_a_plain_status() {
        // flush(8) answers with the same `{status}` list as bounce(8).
        let list = AttrDecoder::default()
            .feed(b"status\x004\0\0")
            .unwrap()
            .remove(0);
        assert_eq!(
            StatusReply::decode(&list).map(|r| r.status),
            Ok(flush_status::DENY)
        );
    }
}
