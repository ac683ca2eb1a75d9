//! Queue ids: the file names under the queue directories.
//!
//! Postfix names a queue file after the time it was created and its inode number, in one of two
//! forms (`enable_long_queue_ids`):
//! - short: 5 uppercase hex digits of the microseconds, then the inode in uppercase hex,
//!   e.g. `8D59998C1CB`. Reused after a second; the default.
//! - long: the seconds in base 52 (at least 6 digits), the microseconds in base 52 (exactly 4
//!   digits), a literal `z`, then the inode in base 51 (so it has no `z`), e.g. `4jcprB36yHz1SRvJ`.
//!
//! Anything matching `[A-Za-z0-9_]{1,255}` is a valid queue-directory name (flush(8) logs use
//! domain names with `_`), so [`QueueId`] accepts it; [`QueueId::decode`] is the strict parser.

use std::fmt;

/// Longest valid id (Postfix's `VALID_HOSTNAME_LEN`, because flush logs are named by domain).
pub const MAX_QUEUE_ID_LEN: usize = 255;

/// Digits of the long-id bases: 0-9, then the consonants; a digit's value is its index.
pub const SAFE_ALPHABET: &[u8; 52] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

/// Base of the seconds and microseconds in a long id.
const LONG_TIME_BASE: u64 = 52;
/// Base of the inode in a long id: one less than 52 so that `z` never occurs in it.
const LONG_INODE_BASE: u64 = 51;
/// Minimum width of the seconds field of a long id (left-padded with `0`).
const LONG_SECS_MIN_WIDTH: usize = 6;
/// Exact width of the microseconds field of a long id.
const LONG_USECS_WIDTH: usize = 4;
/// Separator between the time and the inode of a long id.
const LONG_INODE_SEPARATOR: u8 = b'z';
/// Exact width of the hex microseconds that start a short id.
const SHORT_USECS_WIDTH: usize = 5;
/// Microseconds are below one million; anything else was not made by a clock.
const USECS_PER_SEC: u32 = 1_000_000;

/// Whether `id` can name a queue file (Postfix's `mail_queue_id_ok`).
pub fn queue_id_ok(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_QUEUE_ID_LEN
        && id.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Why bytes are not a queue id, or why an id cannot be made or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueIdError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_QUEUE_ID_LEN`].
    TooLong(usize),
    /// The name has a byte outside `[A-Za-z0-9_]` at this offset.
    BadByte { offset: usize, byte: u8 },
    /// Microseconds of one million or more were given to [`QueueId::make`].
    UsecsOutOfRange(u32),
    /// A valid name that is neither a well-formed short nor long id.
    NotShortOrLong,
}

impl fmt::Display for QueueIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueIdError::Empty => f.write_str("empty queue id"),
            QueueIdError::TooLong(len) => {
                write!(
                    f,
                    "queue id is {len} characters, at most {MAX_QUEUE_ID_LEN} allowed"
                )
            }
            QueueIdError::BadByte { offset, byte } => {
                write!(
                    f,
                    "bad character 0x{byte:02x} at offset {offset} of queue id"
                )
            }
            QueueIdError::UsecsOutOfRange(usecs) => {
                write!(f, "microseconds out of range: {usecs}")
            }
            QueueIdError::NotShortOrLong => f.write_str("not a short or long queue id"),
        }
    }
}

impl std::error::Error for QueueIdError {}

/// Which of the two id forms a name is, by Postfix's own rule: long when its last `z` is at
/// offset 10 or later (seconds >= 6 digits + 4 microsecond digits come first), else short.
/// This only looks at the separator; [`QueueId::decode`] checks the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdForm {
    Short,
    Long,
}

/// What a well-formed id says about its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdFields {
    /// Creation seconds since the epoch; short ids do not carry them.
    pub secs: Option<u64>,
    /// Creation microseconds.
    pub usecs: u32,
    /// Inode number of the queue file when it was created.
    pub inode: u64,
}

/// A valid queue id (see [`queue_id_ok`]). ASCII by construction, hence a `String`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(String);

impl QueueId {
    /// Checks a file name or protocol value as a queue id.
    pub fn parse(bytes: &[u8]) -> Result<QueueId, QueueIdError> {
        if bytes.is_empty() {
            return Err(QueueIdError::Empty);
        }
        if bytes.len() > MAX_QUEUE_ID_LEN {
            return Err(QueueIdError::TooLong(bytes.len()));
        }
        if let Some(offset) = bytes
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
        {
            let byte = bytes.get(offset).copied().unwrap_or(0);
            return Err(QueueIdError::BadByte { offset, byte });
        }
        // Every byte is ASCII, so this is lossless.
        Ok(QueueId(bytes.iter().map(|&b| char::from(b)).collect()))
    }

    /// Makes the id Postfix gives a file created at `secs`.`usecs` with inode `inode`.
    pub fn make(secs: u64, usecs: u32, inode: u64, long: bool) -> Result<QueueId, QueueIdError> {
        if usecs >= USECS_PER_SEC {
            return Err(QueueIdError::UsecsOutOfRange(usecs));
        }
        let id = if long {
            let mut id = encode_safe(secs, LONG_TIME_BASE, LONG_SECS_MIN_WIDTH);
            id.push_str(&encode_safe(
                u64::from(usecs),
                LONG_TIME_BASE,
                LONG_USECS_WIDTH,
            ));
            id.push(char::from(LONG_INODE_SEPARATOR));
            // No padding: inode 0 gives nothing here, as in Postfix.
            id.push_str(&encode_safe(inode, LONG_INODE_BASE, 0));
            id
        } else {
            format!("{usecs:05X}{inode:X}")
        };
        Ok(QueueId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as bytes (for the wire and for file names).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Short or long, by the separator rule Postfix uses for hashing.
    pub fn form(&self) -> IdForm {
        if long_separator(self.as_bytes()).is_some() {
            IdForm::Long
        } else {
            IdForm::Short
        }
    }

    /// Reads the time and inode back out of a well-formed short or long id.
    pub fn decode(&self) -> Result<IdFields, QueueIdError> {
        let bytes = self.as_bytes();
        match long_separator(bytes) {
            Some(z) => decode_long(bytes, z),
            None => decode_short(bytes),
        }
        .ok_or(QueueIdError::NotShortOrLong)
    }

    /// The string whose leading characters pick the hashed subdirectories (`hash_queue_depth`).
    ///
    /// Short ids (and any other name) hash by themselves, i.e. by their hex microseconds. Long
    /// ids hash by their microseconds converted to `%05X`, so both forms spread the same way;
    /// unreadable microseconds count as 0, as in Postfix.
    pub fn hash_key(&self) -> String {
        self.with_hash_key(|key| String::from_utf8_lossy(key).into_owned())
    }

    /// Calls `f` with [`QueueId::hash_key`]'s bytes, built on the stack (paths are made for
    /// every file operation).
    pub fn with_hash_key<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let bytes = self.as_bytes();
        let Some(z) = long_separator(bytes) else {
            return f(bytes);
        };
        let usecs = z
            .checked_sub(LONG_USECS_WIDTH)
            .and_then(|start| bytes.get(start..z))
            .and_then(|digits| decode_safe(digits, LONG_TIME_BASE))
            .unwrap_or(0);
        // `%05X`: upper-case hex, at least five digits.
        let mut hex = [b'0'; 16];
        let mut at = hex.len();
        let mut rest = usecs;
        while rest > 0 || hex.len() - at < 5 {
            at -= 1;
            if let Some(d) = hex.get_mut(at) {
                *d = b"0123456789ABCDEF"[(rest & 0xF) as usize];
            }
            rest >>= 4;
        }
        f(hex.get(at..).unwrap_or_default())
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for QueueId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Offset of the long-id separator: the last `z`, if it comes after the 10 time digits.
fn long_separator(id: &[u8]) -> Option<usize> {
    memchr::memrchr(LONG_INODE_SEPARATOR, id)
        .filter(|&z| z >= LONG_SECS_MIN_WIDTH + LONG_USECS_WIDTH)
}

fn decode_long(id: &[u8], z: usize) -> Option<IdFields> {
    let usecs_start = z.checked_sub(LONG_USECS_WIDTH)?;
    let secs = decode_safe(id.get(..usecs_start)?, LONG_TIME_BASE)?;
    let usecs = decode_safe(id.get(usecs_start..z)?, LONG_TIME_BASE)?;
    // An empty inode field is inode 0 (Postfix encodes 0 without digits).
    let inode = decode_safe(id.get(z + 1..)?, LONG_INODE_BASE)?;
    Some(IdFields {
        secs: Some(secs),
        usecs: u32::try_from(usecs).ok().filter(|&u| u < USECS_PER_SEC)?,
        inode,
    })
}

fn decode_short(id: &[u8]) -> Option<IdFields> {
    let usecs = decode_upper_hex(id.get(..SHORT_USECS_WIDTH)?)?;
    let inode_digits = id.get(SHORT_USECS_WIDTH..)?;
    if inode_digits.is_empty() {
        return None;
    }
    Some(IdFields {
        secs: None,
        usecs: u32::try_from(usecs).ok().filter(|&u| u < USECS_PER_SEC)?,
        inode: decode_upper_hex(inode_digits)?,
    })
}

/// Value of uppercase hex digits (the short form never uses lowercase); None on overflow.
fn decode_upper_hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        acc.checked_mul(16)?.checked_add(u64::from(digit))
    })
}

/// `value` in the safe alphabet with `base` digits, left-padded with `0` to `min_width`.
fn encode_safe(mut value: u64, base: u64, min_width: usize) -> String {
    let mut digits = Vec::new();
    while value != 0 {
        // The remainder is below base <= 52, so the index is in range.
        let digit = usize::try_from(value % base).unwrap_or(0);
        digits.push(SAFE_ALPHABET.get(digit).copied().unwrap_or(b'0'));
        value /= base;
    }
    while digits.len() < min_width {
        digits.push(b'0');
    }
    digits.iter().rev().map(|&b| char::from(b)).collect()
}

/// Value of safe-alphabet digits in `base`; None if a byte is not a digit of that base or the
/// value overflows. No digits at all is 0.
fn decode_safe(digits: &[u8], base: u64) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &b| {
        let digit = SAFE_ALPHABET.iter().position(|&d| d == b)? as u64;
        if digit >= base {
            return None;
        }
        acc.checked_mul(base)?.checked_add(digit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Made by Postfix 3.7.11's sendmail/postdrop on this machine (enable_long_queue_ids = yes,
    // then no): file inodes 10011061 and 10011083, time 1795961242.
    const REAL_LONG: &str = "4jcprB36yHz1SRvJ";
    const REAL_SHORT: &str = "8D59998C1CB";

    fn id(s: &str) -> QueueId {
        QueueId::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn real_long_id_decodes_to_its_creation_time_and_inode() {
        let fields = id(REAL_LONG).decode().unwrap();
        assert_eq!(
            fields,
            IdFields {
                secs: Some(1_795_961_242),
                usecs: 440_663,
                inode: 10_011_061
            }
        );
        assert_eq!(
            QueueId::make(1_795_961_242, 440_663, 10_011_061, true)
                .unwrap()
                .as_str(),
            REAL_LONG
        );
        assert_eq!(id(REAL_LONG).form(), IdForm::Long);
    }

    #[test]
    fn hash_key_of_long_ids_is_the_usecs_in_05x() {
        // Every usecs width: 0, short of 5 digits, 5 digits, and the 6 digits of out-of-range
        // values 4 base-52 digits can hold (52^4 - 1 = 0x6F90FF).
        for usecs in [0u64, 0x1A, 0xF423F, 0x100000, 52u64.pow(4) - 1] {
            let long = format!(
                "{}{}z{}",
                encode_safe(1_700_000_000, LONG_TIME_BASE, LONG_SECS_MIN_WIDTH),
                encode_safe(usecs, LONG_TIME_BASE, LONG_USECS_WIDTH),
                encode_safe(12345, LONG_INODE_BASE, 1)
            );
            assert_eq!(id(&long).hash_key(), format!("{usecs:05X}"), "{long}");
        }
        assert_eq!(
            id(REAL_SHORT).with_hash_key(|k| k.to_vec()),
            REAL_SHORT.as_bytes()
        );
    }

    #[test]
    fn real_short_id_decodes_to_usecs_and_inode() {
        let fields = id(REAL_SHORT).decode().unwrap();
        assert_eq!(fields.secs, None);
        assert_eq!(fields.usecs, 0x8D599);
        assert_eq!(fields.inode, 10_011_083);
        assert_eq!(
            QueueId::make(0, 0x8D599, 10_011_083, false)
                .unwrap()
                .as_str(),
            REAL_SHORT
        );
        assert_eq!(id(REAL_SHORT).form(), IdForm::Short);
    }

    #[test]
    fn hash_keys_of_real_ids_match_postsuper() {
        // postsuper found these files in deferred/6/B/... and deferred/8/D/... (depth 2).
        assert_eq!(id(REAL_LONG).hash_key(), "6B957");
        assert_eq!(id(REAL_SHORT).hash_key(), REAL_SHORT);
    }

    #[test]
    fn long_ids_hash_by_their_microseconds_in_five_hex_digits() {
        for usecs in [0, 1, 0xF, 0x10, 0xABCDE, 999_999] {
            let id = QueueId::make(1_700_000_000, usecs, 77, true).unwrap();
            assert_eq!(id.hash_key(), format!("{usecs:05X}"));
        }
    }

    #[test]
    fn padding_and_zero_values() {
        assert_eq!(QueueId::make(0, 0, 1, false).unwrap().as_str(), "000001");
        assert_eq!(
            QueueId::make(0, 0, 0, true).unwrap().as_str(),
            "0000000000z"
        );
        assert_eq!(
            QueueId::make(51, 51, 50, true).unwrap().as_str(),
            "00000z000zzy"
        );
        let zero = id("0000000000z").decode().unwrap();
        assert_eq!(zero.inode, 0);
    }

    #[test]
    fn usecs_of_a_million_are_refused() {
        assert_eq!(
            QueueId::make(1, 1_000_000, 1, true),
            Err(QueueIdError::UsecsOutOfRange(1_000_000))
        );
    }

    #[test]
    fn validity_follows_mail_queue_id_ok() {
        assert!(queue_id_ok(b"example_com"));
        assert!(queue_id_ok(&[b'A'; 255]));
        assert!(!queue_id_ok(&[b'A'; 256]));
        assert!(!queue_id_ok(b""));
        for bad in [&b"a.b"[..], b"a/b", b"a-b", b"a b", b"\xc3\xa9", b"a\0"] {
            assert!(!queue_id_ok(bad), "{bad:?}");
            assert!(QueueId::parse(bad).is_err());
        }
        assert_eq!(QueueId::parse(b""), Err(QueueIdError::Empty));
        assert_eq!(
            QueueId::parse(&[b'A'; 256]),
            Err(QueueIdError::TooLong(256))
        );
        assert_eq!(
            QueueId::parse(b"AB.C"),
            Err(QueueIdError::BadByte {
                offset: 2,
                byte: b'.'
            })
        );
    }

    #[test]
    fn a_z_before_offset_10_is_not_a_separator() {
        // Nine time digits then `z`: Postfix treats it as a short id and hashes it as is.
        let early = id("123456789zABC");
        assert_eq!(early.form(), IdForm::Short);
        assert_eq!(early.hash_key(), "123456789zABC");
        assert_eq!(early.decode(), Err(QueueIdError::NotShortOrLong));
    }

    #[test]
    fn unreadable_long_usecs_hash_as_zero() {
        // `a` (a vowel) and `_` are not digits: the key falls back to 00000.
        assert_eq!(id("BBBBBBaBBBzC").hash_key(), "00000");
        assert_eq!(id("BBBBBB_BBBzC").hash_key(), "00000");
        // Only the last `z` counts; earlier ones are base-52 digits (51).
        assert_eq!(
            id("zzzzzzzzzzzzC").hash_key(),
            format!("{:05X}", 52u64.pow(4) - 1)
        );
    }

    #[test]
    fn malformed_names_do_not_decode() {
        for name in [
            "ABCDE",
            "abcdef",
            "8D599xyz",
            "example_com",
            "0000000000zz_",
        ] {
            assert_eq!(
                id(name).decode(),
                Err(QueueIdError::NotShortOrLong),
                "{name}"
            );
        }
        // 5 hex digits above 999999 are not microseconds.
        assert!(id("FFFFF1").decode().is_err());
    }

    proptest! {
        #[test]
        fn long_ids_round_trip(secs in any::<u64>(), usecs in 0u32..1_000_000, inode in any::<u64>()) {
            let made = QueueId::make(secs, usecs, inode, true).unwrap();
            prop_assert!(queue_id_ok(made.as_bytes()));
            prop_assert_eq!(made.form(), IdForm::Long);
            prop_assert_eq!(made.decode().unwrap(), IdFields { secs: Some(secs), usecs, inode });
            let short = QueueId::make(secs, usecs, inode, false).unwrap();
            prop_assert_eq!(made.hash_key(), short.hash_key().get(..5).unwrap_or("").to_string());
        }

        #[test]
        fn short_ids_round_trip(usecs in 0u32..1_000_000, inode in any::<u64>()) {
            let made = QueueId::make(0, usecs, inode, false).unwrap();
            prop_assert!(queue_id_ok(made.as_bytes()));
            prop_assert_eq!(made.form(), IdForm::Short);
            prop_assert_eq!(made.decode().unwrap(), IdFields { secs: None, usecs, inode });
            prop_assert_eq!(made.hash_key(), made.as_str());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            match QueueId::parse(&bytes) {
                Ok(parsed) => {
                    prop_assert!(queue_id_ok(&bytes));
                    prop_assert_eq!(parsed.as_bytes(), &bytes[..]);
                    let _ = parsed.decode();
                    prop_assert!(parsed.hash_key().len() >= 5 || parsed.form() == IdForm::Short);
                }
                Err(_) => prop_assert!(!queue_id_ok(&bytes)),
            }
        }

        #[test]
        fn id_shaped_names_never_panic(name in "[0-9A-Za-z_]{1,40}") {
            let parsed = QueueId::parse(name.as_bytes()).unwrap();
            let _ = parsed.decode();
            let _ = parsed.hash_key();
        }
    }
}
