//! The record framing: length encoding and decoding, and the record writer (rec_put).

use std::io::{self, Write};

/// Append the length encoding of `len` (7-bit groups, low first, high bit = more).
pub fn encode_length(len: usize, out: &mut Vec<u8>) {
    let mut rest = len;
    loop {
        let mut byte = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest != 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if rest == 0 {
            break;
        }
    }
}

/// A complete record (type, length, data) as bytes.
pub fn encode_record(rec_type: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 6);
    out.push(rec_type);
    encode_length(data.len(), &mut out);
    out.extend_from_slice(data);
    out
}

/// Incremental length decoder with rec_get_raw()'s exact arithmetic: at most 5 groups
/// (a continuation bit on the 5th is "too many length bits"), the 5th group shifted in
/// 32-bit int arithmetic so that bit 31 makes the length negative (then "illegal length").
#[derive(Debug, Clone, Default)]
pub struct LengthDecoder {
    len: i64,
    shift: u32,
}

/// Progress of [`LengthDecoder::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthStep {
    /// Another length byte is needed.
    More,
    /// The length is complete (may be negative: the caller must reject that).
    Done(i64),
    /// The previous byte had the continuation bit but 5 bytes were already consumed.
    TooManyBits,
}

impl LengthDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether another byte may still be consumed (false: "too many length bits").
    pub fn wants_byte(&self) -> bool {
        self.shift < 32
    }

    /// Feed one length byte.
    pub fn push(&mut self, byte: u8) -> LengthStep {
        if !self.wants_byte() {
            return LengthStep::TooManyBits;
        }
        // C: `len |= (len_byte & 0177) << shift` with an int left operand.
        let group = ((u32::from(byte & 0x7f)) << self.shift) as i32;
        self.len |= i64::from(group);
        if byte & 0x80 == 0 {
            return LengthStep::Done(self.len);
        }
        self.shift += 7;
        if self.wants_byte() {
            LengthStep::More
        } else {
            LengthStep::TooManyBits
        }
    }
}

/// Errors decoding a length from a byte slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthError {
    /// Input ended inside the length.
    Eof,
    /// A continuation bit on the 5th length byte.
    TooManyBits,
    /// The decoded length is negative (bit 31 set by the 5th byte).
    Negative(i64),
}

/// Decode a length at the start of `bytes`: (length, bytes consumed).
pub fn decode_length(bytes: &[u8]) -> Result<(u64, usize), LengthError> {
    let mut decoder = LengthDecoder::new();
    for (i, &b) in bytes.iter().enumerate() {
        match decoder.push(b) {
            LengthStep::More => {}
            LengthStep::Done(len) if len < 0 => return Err(LengthError::Negative(len)),
            LengthStep::Done(len) => return Ok((len as u64, i + 1)),
            LengthStep::TooManyBits => return Err(LengthError::TooManyBits),
        }
    }
    Err(LengthError::Eof)
}

/// Record writer over any `Write`, tracking the offset (rec_put).
pub struct RecordWriter<W> {
    inner: W,
    pos: u64,
}

impl<W: Write> RecordWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, pos: 0 }
    }

    /// Offset of the next record.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Write one record; returns its offset.
    pub fn put(&mut self, rec_type: u8, data: &[u8]) -> io::Result<u64> {
        let offset = self.pos;
        let bytes = encode_record(rec_type, data);
        self.inner.write_all(&bytes)?;
        self.pos += bytes.len() as u64;
        Ok(offset)
    }

    /// Write raw bytes (e.g. a deliberately broken record).
    pub fn put_raw(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let offset = self.pos;
        self.inner.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(offset)
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}
