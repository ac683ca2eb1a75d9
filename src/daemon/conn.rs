//! A non-blocking connection to a Postfix service socket: buffered writes, incremental
//! attribute-list reads, and the `WouldBlock` discipline of a readiness loop.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::Path;

use mio::net::UnixStream;

use crate::proto::attr::{AttrDecoder, AttrError, AttrList, AttrWriter};

/// Why a connection is of no further use.
#[derive(Debug)]
pub enum ConnError {
    Io(io::Error),
    /// Bytes that are not attribute lists.
    Attr(AttrError),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "{}", crate::maillog::strerror(e)),
            ConnError::Attr(e) => write!(f, "{e}"),
        }
    }
}

/// How the C daemon's streams to `path` are named in attr_scan warnings: mail_connect's
/// `private/<service> socket`. Formatted only when a warning is written.
pub fn socket_name(path: &str) -> String {
    format!("{path} socket")
}

/// What a readiness event said about a connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readiness {
    pub writable: bool,
    /// The peer's end is closed or in error: read on to EOF (see [`Conn::fill_on_event`]).
    pub hangup: bool,
}

impl Readiness {
    pub fn of(event: &mio::event::Event) -> Readiness {
        Readiness {
            writable: event.is_writable(),
            hangup: event.is_read_closed() || event.is_error(),
        }
    }
}

/// One stream to `private/<service>` or `public/<service>`.
pub struct Conn {
    pub stream: UnixStream,
    /// `private/smtp`: how Postfix names the stream in warnings.
    pub path: String,
    out: Vec<u8>,
    written: usize,
    decoder: AttrDecoder,
    lists: VecDeque<AttrList>,
    eof: bool,
}

impl Conn {
    /// Starts a non-blocking connect to `<base>/<path>`; connection refused, a missing socket or
    /// a full backlog fail here at once, as they do for the C daemon.
    pub fn connect(base: &Path, path: &str) -> io::Result<Conn> {
        Ok(Conn::new(UnixStream::connect(base.join(path))?, path))
    }

    /// A connection over `stream`, named `path` in warnings.
    pub fn new(stream: UnixStream, path: &str) -> Conn {
        Conn {
            stream,
            path: path.to_string(),
            out: Vec::new(),
            written: 0,
            decoder: AttrDecoder::default(),
            lists: VecDeque::new(),
            eof: false,
        }
    }

    /// Appends bytes to send; call [`Conn::flush`] afterwards.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Appends what `write` writes to the bytes to send (no buffer of its own per request);
    /// call [`Conn::flush`] afterwards.
    pub fn queue_with(&mut self, write: impl FnOnce(&mut AttrWriter)) {
        let mut w = AttrWriter::with_buffer(std::mem::take(&mut self.out));
        write(&mut w);
        self.out = w.into_bytes();
    }

    /// Sends `bytes` after whatever is still queued; what the socket does not take is queued
    /// (the same writes as [`Conn::queue`] then [`Conn::flush`], without copying a request
    /// that goes out at once). `Ok(true)`: everything is out.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<bool> {
        if self.wants_write() {
            self.queue(bytes);
            return self.flush();
        }
        let mut done = 0;
        while let Some(rest) = bytes.get(done..).filter(|r| !r.is_empty()) {
            match self.stream.write(rest) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.out.clear();
                    self.out.extend_from_slice(rest);
                    self.written = 0;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Writes what it can. `Ok(true)`: everything is out.
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.written = 0;
        Ok(true)
    }

    /// Whether unsent bytes remain.
    pub fn wants_write(&self) -> bool {
        self.written < self.out.len()
    }

    /// Reads everything available into complete lists. EOF is remembered, not an error: a
    /// reply may arrive together with the close. Reads go on until EAGAIN even after a short
    /// read: with edge-triggered readiness, a close that arrived with the data raises no new
    /// edge and is seen only by reading again. For reads outside a readiness event (timers).
    pub fn fill(&mut self) -> Result<(), ConnError> {
        self.read_lists(true)
    }

    /// [`Conn::fill`] for a readiness event; `hangup`: the event said the peer's end is closed
    /// (or in error). Without it, a short read means the socket is empty: the read that would
    /// only say EAGAIN is saved (one per reply), and data or a close arriving later raises a
    /// new edge. With it, reading goes on until EOF, so a close that came with the data is seen.
    pub fn fill_on_event(&mut self, hangup: bool) -> Result<(), ConnError> {
        self.read_lists(hangup)
    }

    fn read_lists(&mut self, to_eagain: bool) -> Result<(), ConnError> {
        let mut buf = [0u8; 8192];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.decoder
                        .feed_into(&buf[..n], &mut self.lists)
                        .map_err(ConnError::Attr)?;
                    if n < buf.len() && !to_eagain {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
    }

    /// The next complete list, if one arrived.
    pub fn next_list(&mut self) -> Option<AttrList> {
        self.lists.pop_front()
    }

    /// The peer has closed its end.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// attr_scan's warning when the input ends now (a close or a reset): none between lists.
    pub fn cut_off_warning(&self) -> Option<String> {
        self.decoder.eof_warning(&socket_name(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Conn, std::os::unix::net::UnixStream) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (
            Conn::new(UnixStream::from_std(ours), "private/test"),
            theirs,
        )
    }

    #[test]
    fn a_short_read_ends_the_fill_and_a_hangup_reads_on_to_eof() {
        let (mut conn, mut peer) = pair();
        peer.write_all(b"status\x000\0\0").unwrap();
        drop(peer);
        // Without a hang-up in the event, the short read is taken as "empty": the close that
        // came with the data waits for its own event.
        conn.fill_on_event(false).unwrap();
        assert!(conn.next_list().is_some());
        assert!(!conn.at_eof());
        // The event that says so reads on and sees it.
        conn.fill_on_event(true).unwrap();
        assert!(conn.at_eof());
    }
}
