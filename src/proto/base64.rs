//! Standard base64 (`A-Za-z0-9+/`, `=` padding), as Postfix's `base64_code.c` writes it for
//! `data` attributes.
//!
//! The decoder is strict: it accepts exactly the canonical output of [`encode`] (length a
//! multiple of 4, padding only at the end, unused bits zero). Postfix's own decoder is more
//! lenient (it stops at the first `=`), but every Postfix writer emits canonical text.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a text is not canonical base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base64Error {
    /// The length is not a multiple of 4.
    BadLength(usize),
    /// A byte outside the alphabet (or `=` before the final group) at this offset.
    BadByte { offset: usize, byte: u8 },
    /// The bits that padding leaves unused are not zero, so re-encoding would differ.
    NonCanonical,
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base64Error::BadLength(len) => write!(f, "base64 length {len} is not a multiple of 4"),
            Base64Error::BadByte { offset, byte } => {
                write!(f, "invalid base64 byte 0x{byte:02x} at offset {offset}")
            }
            Base64Error::NonCanonical => write!(f, "non-canonical base64 padding bits"),
        }
    }
}

impl std::error::Error for Base64Error {}

/// Appends the base64 text of `input` to `out`.
pub fn encode_into(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(input.len()));
    let mut chunks = input.chunks_exact(3);
    for chunk in &mut chunks {
        let group = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        push_sextets(group, 4, out);
    }
    match *chunks.remainder() {
        [a] => {
            push_sextets(u32::from(a) << 16, 2, out);
            out.extend_from_slice(b"==");
        }
        [a, b] => {
            push_sextets(u32::from(a) << 16 | u32::from(b) << 8, 3, out);
            out.push(b'=');
        }
        _ => {}
    }
}

fn push_sextets(group: u32, count: usize, out: &mut Vec<u8>) {
    for shift in [18u32, 12, 6, 0].iter().take(count) {
        // The mask keeps the index below 64.
        out.push(ALPHABET[((group >> shift) & 0x3f) as usize]);
    }
}

/// The base64 text of `input`.
pub fn encode(input: &[u8]) -> String {
    let mut out = Vec::new();
    encode_into(input, &mut out);
    // The alphabet is ASCII.
    out.into_iter().map(char::from).collect()
}

/// Length of the base64 text for `len` input bytes.
pub fn encoded_len(len: usize) -> usize {
    len.div_ceil(3) * 4
}

fn sextet(byte: u8) -> Option<u32> {
    let value = match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(value))
}

/// Decodes canonical base64 text.
pub fn decode(text: &[u8]) -> Result<Vec<u8>, Base64Error> {
    if text.len() % 4 != 0 {
        return Err(Base64Error::BadLength(text.len()));
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let groups = text.len() / 4;
    for (index, group) in text.chunks_exact(4).enumerate() {
        let base = index * 4;
        let is_last = index + 1 == groups;
        let padding = if is_last {
            group
                .iter()
                .rev()
                .take_while(|&&b| b == b'=')
                .count()
                .min(2)
        } else {
            0
        };
        let mut bits = 0u32;
        for (pos, &byte) in group.iter().enumerate() {
            let value = if pos >= 4 - padding {
                0
            } else {
                sextet(byte).ok_or(Base64Error::BadByte {
                    offset: base + pos,
                    byte,
                })?
            };
            bits = bits << 6 | value;
        }
        let bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        let keep = 3 - padding;
        if bytes.iter().skip(keep).any(|&b| b != 0) {
            return Err(Base64Error::NonCanonical);
        }
        out.extend_from_slice(bytes.get(..keep).unwrap_or(&bytes));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (plain, text) in cases {
            assert_eq!(encode(plain), text);
            assert_eq!(decode(text.as_bytes()).as_deref(), Ok(plain));
        }
        assert_eq!(encode(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn rejects_non_canonical_text() {
        assert_eq!(decode(b"Zg="), Err(Base64Error::BadLength(3)));
        assert_eq!(
            decode(b"Zg=a"),
            Err(Base64Error::BadByte {
                offset: 2,
                byte: b'='
            })
        );
        assert_eq!(
            decode(b"Zg==Zg=="),
            Err(Base64Error::BadByte {
                offset: 2,
                byte: b'='
            })
        );
        assert_eq!(decode(b"Zh=="), Err(Base64Error::NonCanonical));
        assert_eq!(
            decode(b"Z==="),
            Err(Base64Error::BadByte {
                offset: 1,
                byte: b'='
            })
        );
        assert_eq!(decode(b"Zm9v\n"), Err(Base64Error::BadLength(5)));
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = encode(&bytes);
            prop_assert_eq!(text.len(), encoded_len(bytes.len()));
            prop_assert_eq!(decode(text.as_bytes()), Ok(bytes));
        }

        #[test]
        fn accepted_text_is_canonical(text in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(bytes) = decode(&text) {
                prop_assert_eq!(encode(&bytes).into_bytes(), text);
            }
        }

        #[test]
        fn accepted_alphabet_text_is_canonical(text in "[A-Za-z0-9+/=]{0,24}") {
            if let Ok(bytes) = decode(text.as_bytes()) {
                prop_assert_eq!(encode(&bytes), text);
            }
        }
    }
}
