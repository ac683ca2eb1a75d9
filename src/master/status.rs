//! The 12-byte status messages on fd 5, and the `GENERATION` master hands each child.

use std::fmt;

/// What we tell master about ourselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Busy with a trigger (sent before reading it).
    Taken = 0,
    /// Idle again (sent after handling it).
    Avail = 1,
}

/// `struct MASTER_STATUS { int pid; unsigned gen; int avail; }` in native byte order, written
/// with a single write(2).
pub fn encode(pid: i32, generation: u32, availability: Availability) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[0..4].copy_from_slice(&pid.to_ne_bytes());
    out[4..8].copy_from_slice(&generation.to_ne_bytes());
    out[8..12].copy_from_slice(&(availability as i32).to_ne_bytes());
    out
}

/// A `GENERATION` value that is not all digits (fatal in the C daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadGeneration(pub String);

impl fmt::Display for BadGeneration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad generation: {}", self.0)
    }
}

impl std::error::Error for BadGeneration {}

/// Decodes `GENERATION` the way the trigger server does: all decimal digits are required, and
/// they are then read as octal (master prints it with `%o`). An empty value is all digits and
/// is 0; digits 8 and 9 are accepted and, as in C, add their value times the place.
pub fn parse_generation(value: &str) -> Result<u32, BadGeneration> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadGeneration(value.to_string()));
    }
    Ok(value.bytes().fold(0u32, |acc, b| {
        acc.wrapping_mul(8).wrapping_add(u32::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_message_is_pid_generation_availability() {
        let m = encode(4242, 0o13, Availability::Taken);
        assert_eq!(&m[0..4], &4242i32.to_ne_bytes());
        assert_eq!(&m[4..8], &11u32.to_ne_bytes());
        assert_eq!(&m[8..12], &0i32.to_ne_bytes());
        assert_eq!(encode(1, 2, Availability::Avail)[8..12], 1i32.to_ne_bytes());
    }

    #[test]
    fn generation_is_octal_digits() {
        // The capture: GENERATION=13 gives gen=11 in every status message.
        assert_eq!(parse_generation("13"), Ok(11));
        assert_eq!(parse_generation("0"), Ok(0));
        assert_eq!(parse_generation(""), Ok(0));
        assert_eq!(
            parse_generation("1a").unwrap_err().to_string(),
            "bad generation: 1a"
        );
        assert!(parse_generation("-1").is_err());
    }
}
