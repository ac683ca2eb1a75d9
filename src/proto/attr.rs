//! Postfix's NUL-terminated attribute protocol (`attr_print0` / `attr_scan0`), the framing of
//! every request and reply on qmgr's internal sockets.
//!
//! Wire form: each attribute is `name\0value\0`; a list ends with one extra `\0` (an empty
//! name). Numbers travel as unsigned decimal, binary data as base64. Grouped sub-lists
//! (recipient, DSN, MSG_STATS) add no terminator of their own.
//!
//! - [`AttrWriter`] builds requests into a byte buffer (the caller writes and flushes it).
//! - [`AttrDecoder`] turns arbitrary chunks from a non-blocking socket into complete
//!   [`AttrList`]s, with size limits so a flooding peer cannot make it grow without bound.
//! - [`AttrReader`] reads a list positionally the way `attr_scan` does, with typed errors
//!   whose [`AttrError::warning`] gives the C wording.

use std::fmt;

use memchr::memchr;

use super::base64;

/// One attribute: name and value bytes.
pub type Attr = (Vec<u8>, Vec<u8>);

/// Appends attributes in `attr_print0` form to a byte buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttrWriter {
    buf: Vec<u8>,
}

/// The part of `bytes` a C string would carry: up to the first NUL.
fn c_string(bytes: &[u8]) -> &[u8] {
    match memchr(0, bytes) {
        Some(end) => bytes.get(..end).unwrap_or(bytes),
        None => bytes,
    }
}

impl AttrWriter {
    pub fn new() -> Self {
        AttrWriter::default()
    }

    /// Continues appending to an existing buffer.
    pub fn with_buffer(buf: Vec<u8>) -> Self {
        AttrWriter { buf }
    }

    fn raw(&mut self, name: &[u8], value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(c_string(name));
        self.buf.push(0);
        self.buf.extend_from_slice(c_string(value));
        self.buf.push(0);
        self
    }

    /// A string attribute. Like the C writer (which prints C strings), a value is cut at its
    /// first NUL byte, which could not otherwise travel.
    pub fn str(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.raw(name.as_bytes(), value)
    }

    /// An int attribute (`%u`).
    pub fn int(&mut self, name: &str, value: u32) -> &mut Self {
        self.long(name, u64::from(value))
    }

    /// A C `int` sent as `%u`: -1 travels as `4294967295`.
    pub fn int_signed(&mut self, name: &str, value: i32) -> &mut Self {
        self.int(name, value as u32)
    }

    /// A long attribute (`%lu`), formatted in place (no string per number).
    pub fn long(&mut self, name: &str, value: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value;
        loop {
            at -= 1;
            if let Some(d) = digits.get_mut(at) {
                *d = b'0' + (rest % 10) as u8;
            }
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.raw(name.as_bytes(), digits.get(at..).unwrap_or_default())
    }

    /// A string attribute whose value is the concatenation of `parts` (cut at the first NUL
    /// of the whole, as [`AttrWriter::str`] would cut the joined value).
    pub fn str_parts(&mut self, name: &str, parts: &[&[u8]]) -> &mut Self {
        self.buf.extend_from_slice(c_string(name.as_bytes()));
        self.buf.push(0);
        for part in parts {
            let kept = c_string(part);
            self.buf.extend_from_slice(kept);
            if kept.len() < part.len() {
                break;
            }
        }
        self.buf.push(0);
        self
    }

    /// A data attribute (base64 of the bytes).
    pub fn data(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(c_string(name.as_bytes()));
        self.buf.push(0);
        base64::encode_into(value, &mut self.buf);
        self.buf.push(0);
        self
    }

    /// Ends the current list.
    pub fn end(&mut self) -> &mut Self {
        self.buf.push(0);
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// A request or reply that travels as one attribute list.
pub trait AttrMessage {
    /// Appends the attributes and the list's end.
    fn write(&self, w: &mut AttrWriter);

    /// The bytes on the wire.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = AttrWriter::new();
        self.write(&mut w);
        w.into_bytes()
    }
}

/// One complete attribute list as received, duplicates kept in wire order.
///
/// Packed: all names and values back to back in one buffer, with where each ends, so a
/// list costs two allocations however many attributes it has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttrList {
    bytes: Vec<u8>,
    /// Per attribute: the end of its name and the end of its value in `bytes`; each name
    /// starts where the previous value ended.
    ends: Vec<(u32, u32)>,
}

/// The attributes of an [`AttrList`], as (name, value).
#[derive(Debug, Clone)]
pub struct AttrIter<'a> {
    list: &'a AttrList,
    pos: usize,
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let attr = self.list.attr(self.pos)?;
        self.pos += 1;
        Some(attr)
    }
}

impl AttrList {
    pub fn new() -> Self {
        AttrList::default()
    }

    /// A list from (name, value) pairs.
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Self {
        let mut list = AttrList::new();
        for (n, v) in pairs {
            list.push(n.as_ref(), v.as_ref());
        }
        list
    }

    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(name);
        let name_end = offset(self.bytes.len());
        self.bytes.extend_from_slice(value);
        self.ends.push((name_end, offset(self.bytes.len())));
    }

    /// The attribute at `index`.
    fn attr(&self, index: usize) -> Option<(&[u8], &[u8])> {
        let &(name_end, value_end) = self.ends.get(index)?;
        let start = match index.checked_sub(1) {
            Some(before) => self.ends.get(before).map_or(0, |e| e.1),
            None => 0,
        };
        let name = self.bytes.get(start as usize..name_end as usize)?;
        let value = self.bytes.get(name_end as usize..value_end as usize)?;
        Some((name, value))
    }

    /// The attributes in wire order.
    pub fn attrs(&self) -> AttrIter<'_> {
        AttrIter { list: self, pos: 0 }
    }

    pub fn into_attrs(self) -> Vec<Attr> {
        self.attrs()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The value of the first attribute with this name.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.attrs()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// Appends the list and its terminator in wire form.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        for (name, value) in self.attrs() {
            out.extend_from_slice(c_string(name));
            out.push(0);
            out.extend_from_slice(c_string(value));
            out.push(0);
        }
        out.push(0);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// A positional reader; see [`AttrReader`].
    pub fn reader(&self, mode: ScanMode) -> AttrReader<'_> {
        AttrReader {
            list: self,
            pos: 0,
            mode,
        }
    }
}

/// A buffer offset as stored in [`AttrList`]; lists are bounded far below 4 GiB by
/// [`DecodeLimits`] (and a list built by hand that large is a bug).
fn offset(len: usize) -> u32 {
    debug_assert!(u32::try_from(len).is_ok(), "attribute list over 4 GiB");
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Bounds on what the decoder buffers for one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Name plus value bytes of one attribute.
    pub max_attr_bytes: usize,
    /// All bytes of one list, NULs and terminator included.
    pub max_list_bytes: usize,
    /// Attributes in one list.
    pub max_attrs: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_attr_bytes: 1 << 20,
            max_list_bytes: 4 << 20,
            max_attrs: 1024,
        }
    }
}

/// Which field the scanner was reading (the C `context` string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Value,
}

impl Field {
    fn context(self) -> &'static str {
        match self {
            Field::Name => "input attribute name",
            Field::Value => "input attribute value",
        }
    }
}

/// Every way an attribute stream or list can be unacceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrError {
    /// One attribute exceeds [`DecodeLimits::max_attr_bytes`].
    AttrTooLong { limit: usize },
    /// One list exceeds [`DecodeLimits::max_list_bytes`].
    ListTooLong { limit: usize },
    /// One list has more than [`DecodeLimits::max_attrs`] attributes.
    TooManyAttrs { limit: usize },
    /// End of input inside a list. `partial` = some bytes of the field had arrived.
    Truncated { field: Field, partial: bool },
    /// The list ended before the wanted attribute.
    Missing { wanted: String },
    /// Another attribute where `wanted` was expected (strict mode), or extra attributes
    /// before the terminator (`wanted` = `(list terminator)`).
    Unexpected { found: Vec<u8>, wanted: String },
    /// A number that is not pure decimal or does not fit.
    MalformedNumber { value: Vec<u8> },
    /// A data value that is not base64.
    MalformedBase64 { value: Vec<u8> },
    /// A fixed-value attribute (e.g. the protocol announcement) with another value.
    UnexpectedValue {
        name: String,
        value: Vec<u8>,
        expected: String,
    },
}

/// `%.100s` of a byte string.
fn show100(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes.get(..100).unwrap_or(bytes)).into_owned()
}

impl AttrError {
    /// The warning the C attribute scanner logs for this error on stream `path`
    /// (e.g. `private/smtp`). Size-limit errors have no C counterpart.
    pub fn warning(&self, path: &str) -> String {
        match self {
            AttrError::AttrTooLong { limit } => {
                format!("attribute from {path} exceeds size limit {limit}")
            }
            AttrError::ListTooLong { limit } => {
                format!("attribute list from {path} exceeds size limit {limit}")
            }
            AttrError::TooManyAttrs { limit } => {
                format!("attribute count exceeds limit {limit} in input from {path}")
            }
            AttrError::Truncated {
                field,
                partial: false,
            } => format!(
                "premature end-of-input on {path} while reading {}",
                field.context()
            ),
            AttrError::Truncated {
                field,
                partial: true,
            } => format!(
                "unexpected end-of-input from {path} while reading {}",
                field.context()
            ),
            AttrError::Missing { wanted } => {
                format!("missing attribute {wanted} in input from {path}")
            }
            AttrError::Unexpected { found, wanted } => format!(
                "unexpected attribute {} from {path} (expecting: {wanted})",
                String::from_utf8_lossy(found)
            ),
            AttrError::MalformedNumber { value } => format!(
                "malformed numerical data from {path} while reading input attribute value: {}",
                show100(value)
            ),
            AttrError::MalformedBase64 { value } => format!(
                "malformed base64 data from {path} while reading input attribute value: {}",
                show100(value)
            ),
            AttrError::UnexpectedValue {
                name,
                value,
                expected,
            } => format!(
                "unexpected {name} {} from {path} (expected: {expected})",
                String::from_utf8_lossy(value)
            ),
        }
    }
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.warning("peer"))
    }
}

impl std::error::Error for AttrError {}

/// Bytes reserved for a list when its first byte arrives: the replies qmgr reads (delivery
/// status, address resolution) fit.
const LIST_BYTES_GUESS: usize = 256;
/// Attributes reserved for a list when its first attribute ends.
const LIST_ATTRS_GUESS: usize = 8;

/// Incremental decoder: feed it whatever the socket returned, get complete lists.
///
/// After an error the stream is unusable and every later call returns that error.
#[derive(Debug, Clone)]
pub struct AttrDecoder {
    limits: DecodeLimits,
    field: Field,
    /// The list being read; the current attribute's bytes are those after `attr_start`
    /// (its name up to `name_end` once the value has begun).
    list: AttrList,
    attr_start: usize,
    name_end: usize,
    list_bytes: usize,
    failed: Option<AttrError>,
}

impl Default for AttrDecoder {
    fn default() -> Self {
        AttrDecoder::new(DecodeLimits::default())
    }
}

impl AttrDecoder {
    pub fn new(limits: DecodeLimits) -> Self {
        AttrDecoder {
            limits,
            field: Field::Name,
            list: AttrList::new(),
            attr_start: 0,
            name_end: 0,
            list_bytes: 0,
            failed: None,
        }
    }

    fn fail(&mut self, err: AttrError) -> AttrError {
        self.failed = Some(err.clone());
        self.list = AttrList::new();
        self.attr_start = 0;
        self.name_end = 0;
        err
    }

    /// Consumes input up to and including the end of the first list completed in it.
    /// Returns how many bytes were consumed and that list, if one was completed; the
    /// caller passes the rest again. Memory stays within the [`DecodeLimits`].
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<AttrList>), AttrError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let mut consumed = 0;
        while let Some(rest) = input.get(consumed..).filter(|r| !r.is_empty()) {
            let nul = memchr(0, rest);
            let piece = match nul {
                Some(end) => rest.get(..end).unwrap_or(rest),
                None => rest,
            };
            let attr_bytes = self.list.bytes.len() - self.attr_start + piece.len();
            if attr_bytes > self.limits.max_attr_bytes {
                let limit = self.limits.max_attr_bytes;
                return Err(self.fail(AttrError::AttrTooLong { limit }));
            }
            let list_bytes = self.list_bytes + piece.len() + usize::from(nul.is_some());
            if list_bytes > self.limits.max_list_bytes {
                let limit = self.limits.max_list_bytes;
                return Err(self.fail(AttrError::ListTooLong { limit }));
            }
            self.list_bytes = list_bytes;
            if self.list.bytes.capacity() == 0 && !piece.is_empty() {
                // One allocation for a typical reply, instead of doubling up to it.
                self.list.bytes.reserve(LIST_BYTES_GUESS.max(piece.len()));
            }
            self.list.bytes.extend_from_slice(piece);
            consumed += piece.len();
            if nul.is_none() {
                break;
            }
            consumed += 1;
            let end = self.list.bytes.len();
            match self.field {
                Field::Name if end == self.attr_start => {
                    self.list_bytes = 0;
                    self.attr_start = 0;
                    return Ok((consumed, Some(std::mem::take(&mut self.list))));
                }
                Field::Name => {
                    if self.list.ends.len() >= self.limits.max_attrs {
                        let limit = self.limits.max_attrs;
                        return Err(self.fail(AttrError::TooManyAttrs { limit }));
                    }
                    self.name_end = end;
                    self.field = Field::Value;
                }
                Field::Value => {
                    if self.list.ends.capacity() == 0 {
                        self.list.ends.reserve(LIST_ATTRS_GUESS);
                    }
                    self.list.ends.push((offset(self.name_end), offset(end)));
                    self.attr_start = end;
                    self.field = Field::Name;
                }
            }
        }
        Ok((consumed, None))
    }

    /// Consumes a whole chunk and returns every list it completed, in order.
    pub fn feed(&mut self, input: &[u8]) -> Result<Vec<AttrList>, AttrError> {
        let mut lists = std::collections::VecDeque::new();
        self.feed_into(input, &mut lists)?;
        Ok(lists.into())
    }

    /// [`AttrDecoder::feed`] appending to `lists` (no vector per chunk); on an error, `lists`
    /// is left as it was, as `feed` returns none of the chunk's lists then.
    pub fn feed_into(
        &mut self,
        mut input: &[u8],
        lists: &mut std::collections::VecDeque<AttrList>,
    ) -> Result<(), AttrError> {
        let before = lists.len();
        while !input.is_empty() {
            match self.push(input) {
                Ok((used, list)) => {
                    lists.extend(list);
                    input = input.get(used..).unwrap_or_default();
                }
                Err(e) => {
                    lists.truncate(before);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// True when no part of a list is buffered (the peer is between lists).
    pub fn is_idle(&self) -> bool {
        self.failed.is_none()
            && self.field == Field::Name
            && self.list.bytes.is_empty()
            && self.list.ends.is_empty()
    }

    /// Whether some bytes of the field being read have arrived.
    fn field_begun(&self) -> bool {
        let start = match self.field {
            Field::Name => self.attr_start,
            Field::Value => self.name_end,
        };
        self.list.bytes.len() > start
    }

    /// What the C attr_scan logs when the input ends here, naming the stream `stream` (its
    /// VSTREAM path): nothing between lists (its EOF check returns quietly), "premature
    /// end-of-input" where a field had not begun, "unexpected end-of-input" inside one.
    pub fn eof_warning(&self, stream: &str) -> Option<String> {
        if self.failed.is_some() || self.is_idle() {
            return None;
        }
        let context = self.field.context();
        Some(if !self.field_begun() {
            format!("premature end-of-input on {stream} while reading {context}")
        } else {
            format!("unexpected end-of-input from {stream} while reading {context}")
        })
    }

    /// Call at end of input: an error if a list was cut off (or decoding had failed).
    pub fn finish(&self) -> Result<(), AttrError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.is_idle() {
            return Ok(());
        }
        Err(AttrError::Truncated {
            field: self.field,
            partial: self.field_begun(),
        })
    }
}

/// How [`AttrReader`] treats an attribute other than the one wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMode {
    /// `ATTR_FLAG_STRICT`: it is an error, and so are attributes left before the terminator.
    Strict,
    /// `ATTR_FLAG_MISSING` alone: it is skipped, and so are leftovers.
    SkipUnknown,
}

/// Reads a list in order, like `attr_scan`: each call wants the next attribute by name.
#[derive(Debug, Clone)]
pub struct AttrReader<'a> {
    list: &'a AttrList,
    pos: usize,
    mode: ScanMode,
}

/// Parses `%u`-style pure decimal.
fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

impl<'a> AttrReader<'a> {
    /// Name of the attribute the next call would look at, if any.
    pub fn peek_name(&self) -> Option<&'a [u8]> {
        self.list.attr(self.pos).map(|(n, _)| n)
    }

    /// Finds the wanted attribute and returns its value.
    fn locate(&mut self, wanted: &str) -> Result<&'a [u8], AttrError> {
        loop {
            let Some((name, value)) = self.list.attr(self.pos) else {
                return Err(AttrError::Missing {
                    wanted: wanted.to_string(),
                });
            };
            self.pos += 1;
            if name == wanted.as_bytes() {
                return Ok(value);
            }
            if self.mode == ScanMode::Strict {
                return Err(AttrError::Unexpected {
                    found: name.to_vec(),
                    wanted: wanted.to_string(),
                });
            }
        }
    }

    /// A string attribute.
    pub fn str(&mut self, name: &str) -> Result<&'a [u8], AttrError> {
        self.locate(name)
    }

    /// An int attribute (pure decimal that fits 32 bits).
    pub fn int(&mut self, name: &str) -> Result<u32, AttrError> {
        let value = self.locate(name)?;
        parse_decimal(value)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| AttrError::MalformedNumber {
                value: value.to_vec(),
            })
    }

    /// An int attribute that carries a C `int` (`4294967295` is -1).
    pub fn int_signed(&mut self, name: &str) -> Result<i32, AttrError> {
        self.int(name).map(|n| n as i32)
    }

    /// A long attribute (pure decimal that fits 64 bits).
    pub fn long(&mut self, name: &str) -> Result<u64, AttrError> {
        let value = self.locate(name)?;
        parse_decimal(value).ok_or_else(|| AttrError::MalformedNumber {
            value: value.to_vec(),
        })
    }

    /// A data attribute, base64-decoded.
    pub fn data(&mut self, name: &str) -> Result<Vec<u8>, AttrError> {
        let value = self.locate(name)?;
        base64::decode(value).map_err(|_| AttrError::MalformedBase64 {
            value: value.to_vec(),
        })
    }

    /// A string attribute that must have exactly this value (`RECV_ATTR_STREQ`).
    pub fn expect_str(&mut self, name: &str, expected: &str) -> Result<(), AttrError> {
        let value = self.locate(name)?;
        if value == expected.as_bytes() {
            Ok(())
        } else {
            Err(AttrError::UnexpectedValue {
                name: name.to_string(),
                value: value.to_vec(),
                expected: expected.to_string(),
            })
        }
    }

    /// The list must end here (strict mode); skipped leftovers are fine otherwise.
    pub fn end(self) -> Result<(), AttrError> {
        match (self.mode, self.list.attr(self.pos)) {
            (ScanMode::Strict, Some((name, _))) => Err(AttrError::Unexpected {
                found: name.to_vec(),
                wanted: "(list terminator)".to_string(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
