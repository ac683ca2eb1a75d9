//! The record reader (rec_get_raw): framing errors with C's wording, bounded memory.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

use super::framing::{LengthDecoder, LengthStep};
use super::RecordType;

/// A record read from a queue file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// File offset of the type byte.
    pub offset: u64,
    pub rec_type: RecordType,
    /// Raw data; may contain NUL bytes (C consumers stop at the first one).
    pub data: Vec<u8>,
}

/// A framing error. Display is rec_get_raw()'s warning text without the `<path>: ` prefix.
/// Read errors other than EOF are reported as EOF, as VSTREAM_GETC does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    TooManyLengthBits { rec_type: u8 },
    EofInLength { rec_type: u8 },
    IllegalLength { rec_type: u8, len: i64 },
    EofInData { rec_type: u8, len: i64 },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyLengthBits { rec_type } => {
                write!(f, "too many length bits, record type {rec_type}")
            }
            Self::EofInLength { rec_type } => {
                write!(f, "unexpected EOF reading length, record type {rec_type}")
            }
            Self::IllegalLength { rec_type, len } => {
                write!(f, "illegal length {len}, record type {rec_type}")
            }
            Self::EofInData { rec_type, len } => write!(
                f,
                "unexpected EOF in data, record type {rec_type} length {len}"
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// Sequential record reader over any seekable byte source, tracking the file offset.
///
/// Reads through a buffer; a record's data is read as it arrives (never pre-allocated from
/// the untrusted length), so memory stays bounded by the record actually present.
pub struct RecordReader<R> {
    inner: BufReader<R>,
    pos: u64,
    max_len: u64,
}

impl<R: Read + Seek> RecordReader<R> {
    /// Start reading at the source's current position, with no record size limit.
    pub fn new(mut inner: R) -> io::Result<Self> {
        let pos = inner.stream_position()?;
        Ok(Self {
            inner: BufReader::with_capacity(8192, inner),
            pos,
            max_len: 0,
        })
    }

    /// Start reading at `pos`, which the caller knows to be the source's current position
    /// (a file just opened is at 0): no position query, so no lseek() per queue file.
    pub fn at(inner: R, pos: u64) -> Self {
        Self {
            inner: BufReader::with_capacity(8192, inner),
            pos,
            max_len: 0,
        }
    }

    /// Reject records longer than `max_len` bytes (0 = unlimited, as qmgr uses).
    pub fn with_max_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len;
        self
    }

    /// The offset of the next byte to be read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Continue reading at the absolute offset `offset` (beyond EOF is allowed).
    pub fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        let buffered = self.inner.buffer().len() as u64;
        if offset >= self.pos && offset - self.pos <= buffered {
            self.inner.consume((offset - self.pos) as usize);
        } else {
            let target = i64::try_from(offset)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
            self.inner.seek(SeekFrom::Start(target as u64))?;
        }
        self.pos = offset;
        Ok(())
    }

    /// Give back the underlying source (its position is unspecified).
    pub fn into_inner(self) -> R {
        self.inner.into_inner()
    }

    fn getc(&mut self) -> Option<u8> {
        loop {
            match self.inner.fill_buf() {
                Ok(buf) => {
                    let byte = *buf.first()?;
                    self.inner.consume(1);
                    self.pos += 1;
                    return Some(byte);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
    }

    /// Read up to `len` bytes into `out`; returns how many arrived.
    fn read_data(&mut self, len: u64, out: &mut Vec<u8>) -> u64 {
        let mut got = 0u64;
        while got < len {
            let chunk = match self.inner.fill_buf() {
                Ok([]) => break,
                Ok(buf) => {
                    let take = usize::try_from(len - got)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    out.extend_from_slice(&buf[..take]);
                    take
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            self.inner.consume(chunk);
            self.pos += chunk as u64;
            got += chunk as u64;
        }
        got
    }

    /// Skip up to `len` bytes (what rec_get_raw does after an illegal length).
    fn skip_data(&mut self, len: u64) {
        let mut left = len;
        while left > 0 {
            let chunk = match self.inner.fill_buf() {
                Ok([]) => break,
                Ok(buf) => usize::try_from(left).unwrap_or(usize::MAX).min(buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            self.inner.consume(chunk);
            self.pos += chunk as u64;
            left -= chunk as u64;
        }
    }

    /// The next record, `Ok(None)` at a clean end of file (EOF before a type byte).
    pub fn next_record(&mut self) -> Result<Option<Record>, RecordError> {
        let mut data = Vec::new();
        Ok(self
            .next_record_into(&mut data)?
            .map(|(offset, rec_type)| Record {
                offset,
                rec_type,
                data,
            }))
    }

    /// [`RecordReader::next_record`] into a caller's buffer (replaced, not appended to), so
    /// a loop over a file's records reuses one allocation; returns the record's offset and
    /// type.
    pub fn next_record_into(
        &mut self,
        data: &mut Vec<u8>,
    ) -> Result<Option<(u64, RecordType)>, RecordError> {
        data.clear();
        let offset = self.pos;
        let Some(rec_type) = self.getc() else {
            return Ok(None);
        };
        let mut decoder = LengthDecoder::new();
        let len = loop {
            if !decoder.wants_byte() {
                return Err(RecordError::TooManyLengthBits { rec_type });
            }
            let Some(byte) = self.getc() else {
                return Err(RecordError::EofInLength { rec_type });
            };
            match decoder.push(byte) {
                LengthStep::Done(len) => break len,
                LengthStep::More | LengthStep::TooManyBits => {}
            }
        };
        if len < 0 || (self.max_len > 0 && len as u64 > self.max_len) {
            if len > 0 {
                self.skip_data(len as u64);
            }
            return Err(RecordError::IllegalLength { rec_type, len });
        }
        if self.read_data(len as u64, data) != len as u64 {
            return Err(RecordError::EofInData { rec_type, len });
        }
        Ok(Some((offset, RecordType(rec_type))))
    }
}
