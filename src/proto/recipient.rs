//! The recipient attribute group (`rcpt_print` / `rcpb_scan`): part of the delivery request's
//! per-recipient lists and of the defer append request. Adds no terminator of its own.

use std::borrow::Cow;
use std::fmt;

use super::attr::{AttrError, AttrReader, AttrWriter};

/// The DSN ORCPT that cleanup(8) records for a recipient the client gave none for.
const RFC822: &[u8] = b"rfc822;";

/// `buf` holds the address only once when the original recipient is the same.
const SHARED_ORIGINAL: u8 = 1;
/// `dsn_orig_rcpt` is `rfc822;` followed by the original recipient, and not stored.
const DERIVED_ORCPT: u8 = 2;

/// One recipient as qmgr hands it on.
///
/// The active queue holds one per in-memory recipient, so the three strings share one
/// allocation (address, original unless equal to the address, DSN ORCPT unless it is
/// `rfc822;<original>`, as cleanup(8) writes it by default): 40 bytes plus one small chunk.
#[derive(Clone)]
pub struct Recipient {
    buf: Box<[u8]>,
    /// `offset`: file offset of the recipient's `R` record.
    pub offset: u64,
    address_len: u32,
    /// Unused with [`SHARED_ORIGINAL`].
    original_len: u32,
    /// `notify_flags`: DSN NOTIFY bits.
    pub notify_flags: u32,
    layout: u8,
}

/// A length as stored; a field of 4 GiB or more (never in a queue file) is cut.
fn stored_len(field: &[u8]) -> &[u8] {
    &field[..field.len().min(u32::MAX as usize)]
}

impl Recipient {
    /// `original` is `original_recipient` (the `O` record; may be empty), `address` the
    /// (possibly resolver-rewritten) `recipient`, `dsn_orig_rcpt` the DSN ORCPT
    /// (e.g. `rfc822;alice@d1.lab`).
    pub fn new(
        original: &[u8],
        address: &[u8],
        offset: u64,
        dsn_orig_rcpt: &[u8],
        notify_flags: u32,
    ) -> Recipient {
        let (original, address, dsn_orig_rcpt) = (
            stored_len(original),
            stored_len(address),
            stored_len(dsn_orig_rcpt),
        );
        let mut layout = 0;
        let mut len = address.len();
        if original == address {
            layout |= SHARED_ORIGINAL;
        } else {
            len += original.len();
        }
        if dsn_orig_rcpt.len() == RFC822.len() + original.len()
            && dsn_orig_rcpt.starts_with(RFC822)
            && &dsn_orig_rcpt[RFC822.len()..] == original
        {
            layout |= DERIVED_ORCPT;
        } else {
            len += dsn_orig_rcpt.len();
        }
        let mut buf = Vec::with_capacity(len);
        buf.extend_from_slice(address);
        if layout & SHARED_ORIGINAL == 0 {
            buf.extend_from_slice(original);
        }
        if layout & DERIVED_ORCPT == 0 {
            buf.extend_from_slice(dsn_orig_rcpt);
        }
        Recipient {
            buf: buf.into_boxed_slice(),
            offset,
            address_len: address.len() as u32,
            original_len: if layout & SHARED_ORIGINAL != 0 {
                0
            } else {
                original.len() as u32
            },
            notify_flags,
            layout,
        }
    }

    /// `recipient`: the (possibly resolver-rewritten) address.
    pub fn address(&self) -> &[u8] {
        self.buf
            .get(..self.address_len as usize)
            .unwrap_or_default()
    }

    /// `original_recipient` (the `O` record; may be empty).
    pub fn original(&self) -> &[u8] {
        if self.layout & SHARED_ORIGINAL != 0 {
            return self.address();
        }
        let start = self.address_len as usize;
        self.buf
            .get(start..start + self.original_len as usize)
            .unwrap_or_default()
    }

    /// `dsn_orig_rcpt`: DSN ORCPT, e.g. `rfc822;alice@d1.lab`.
    pub fn dsn_orig_rcpt(&self) -> Cow<'_, [u8]> {
        if self.layout & DERIVED_ORCPT != 0 {
            let original = self.original();
            let mut orcpt = Vec::with_capacity(RFC822.len() + original.len());
            orcpt.extend_from_slice(RFC822);
            orcpt.extend_from_slice(original);
            return Cow::Owned(orcpt);
        }
        let start = self.address_len as usize + self.original_len as usize;
        Cow::Borrowed(self.buf.get(start..).unwrap_or_default())
    }

    /// [`Recipient::dsn_orig_rcpt`] as two pieces to concatenate, so it can be written
    /// without building the derived form.
    fn dsn_orig_rcpt_parts(&self) -> [&[u8]; 2] {
        if self.layout & DERIVED_ORCPT != 0 {
            return [RFC822, self.original()];
        }
        let start = self.address_len as usize + self.original_len as usize;
        [self.buf.get(start..).unwrap_or_default(), b""]
    }

    /// The resolver rewrote the address.
    pub fn set_address(&mut self, address: &[u8]) {
        *self = Recipient::new(
            self.original(),
            address,
            self.offset,
            &self.dsn_orig_rcpt(),
            self.notify_flags,
        );
    }

    pub fn write(&self, w: &mut AttrWriter) {
        w.str("original_recipient", self.original())
            .str("recipient", self.address())
            .long("offset", self.offset)
            .str_parts("dsn_orig_rcpt", &self.dsn_orig_rcpt_parts())
            .int("notify_flags", self.notify_flags);
    }

    pub fn read(r: &mut AttrReader<'_>) -> Result<Self, AttrError> {
        let original = r.str("original_recipient")?;
        let address = r.str("recipient")?;
        let offset = r.long("offset")?;
        let dsn_orig_rcpt = r.str("dsn_orig_rcpt")?;
        let notify_flags = r.int("notify_flags")?;
        Ok(Recipient::new(
            original,
            address,
            offset,
            dsn_orig_rcpt,
            notify_flags,
        ))
    }
}

impl Default for Recipient {
    fn default() -> Self {
        Recipient::new(b"", b"", 0, b"", 0)
    }
}

impl PartialEq for Recipient {
    fn eq(&self, other: &Self) -> bool {
        self.address() == other.address()
            && self.original() == other.original()
            && self.offset == other.offset
            && self.dsn_orig_rcpt() == other.dsn_orig_rcpt()
            && self.notify_flags == other.notify_flags
    }
}

impl Eq for Recipient {}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lossy = String::from_utf8_lossy;
        f.debug_struct("Recipient")
            .field("original", &lossy(self.original()))
            .field("address", &lossy(self.address()))
            .field("offset", &self.offset)
            .field("dsn_orig_rcpt", &lossy(&self.dsn_orig_rcpt()))
            .field("notify_flags", &self.notify_flags)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_orcpt_is_the_derived_one() {
        for (original, address, orcpt) in [
            (&b"A@d"[..], &b"a@d"[..], &b"rfc822;A@d"[..]),
            (b"", b"a@d", b"rfc822;"),
            (b"o@d", b"a@d", b"x"),
        ] {
            let r = Recipient::new(original, address, 1, orcpt, 2);
            let mut w = AttrWriter::new();
            r.write(&mut w);
            let orcpt_now = r.dsn_orig_rcpt();
            let mut want = AttrWriter::new();
            want.str("original_recipient", original)
                .str("recipient", address)
                .long("offset", 1)
                .str("dsn_orig_rcpt", &orcpt_now)
                .int("notify_flags", 2);
            assert_eq!(w.as_bytes(), want.as_bytes());
            assert_eq!(&*r.dsn_orig_rcpt(), orcpt);
        }
    }

    #[test]
    fn fields_round_trip_through_every_layout() {
        let cases: [(&[u8], &[u8], &[u8]); 6] = [
            (b"", b"", b""),
            (b"a@d", b"a@d", b"rfc822;a@d"),
            (b"A@d", b"a@d", b"rfc822;A@d"),
            (b"", b"a@d", b"rfc822;"),
            (b"o@d", b"a@d", b"x"),
            (b"a@d", b"a@d", b"rfc822;b@d"),
        ];
        for (original, address, orcpt) in cases {
            let r = Recipient::new(original, address, 7, orcpt, 2);
            assert_eq!(
                (r.original(), r.address(), &*r.dsn_orig_rcpt()),
                (original, address, orcpt)
            );
            assert_eq!((r.offset, r.notify_flags), (7, 2));
            let mut moved = r.clone();
            moved.set_address(b"new@d");
            assert_eq!(
                (moved.original(), moved.address(), &*moved.dsn_orig_rcpt()),
                (original, &b"new@d"[..], orcpt)
            );
        }
        // cleanup(8)'s usual recipient: the address only.
        let usual = Recipient::new(b"a@d", b"a@d", 0, b"rfc822;a@d", 0);
        assert_eq!(usual.buf.len(), 3);
        assert_eq!(std::mem::size_of::<Recipient>(), 40);
    }
}
