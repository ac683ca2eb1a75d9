//! The C library's number parsing as Postfix relies on it (C locale, 64-bit long): `isspace`,
//! `strtol(s, &end, 10)`, `atol` and `atoi`. Queue files, main.cf and argv all go through it.

/// C `isspace()` in the C locale.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `strtol(text, &end, 10)` finds: the value (clamped to a 64-bit long on overflow), how
/// many bytes it consumed (0 when there are no digits, as C then sets `end` to the start) and
/// whether it overflowed (ERANGE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strtol {
    pub value: i64,
    pub end: usize,
    pub overflow: bool,
}

impl Strtol {
    /// At least one digit was consumed.
    pub fn has_digits(&self) -> bool {
        self.end > 0
    }
}

/// C `strtol(text, &end, 10)`: optional leading white space and sign, then decimal digits.
pub fn strtol(text: &[u8]) -> Strtol {
    let mut at = text.iter().take_while(|&&b| is_space(b)).count();
    let negative = match text.get(at) {
        Some(b'-') => {
            at += 1;
            true
        }
        Some(b'+') => {
            at += 1;
            false
        }
        _ => false,
    };
    let digits = text
        .get(at..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return Strtol {
            value: 0,
            end: 0,
            overflow: false,
        };
    }
    let mut magnitude: i128 = 0;
    for &digit in &text[at..at + digits] {
        magnitude = (magnitude * 10 + i128::from(digit - b'0')).min(i128::from(u64::MAX));
    }
    let signed = if negative { -magnitude } else { magnitude };
    let overflow = signed > i128::from(i64::MAX) || signed < i128::from(i64::MIN);
    Strtol {
        value: signed.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
        end: at + digits,
        overflow,
    }
}

/// C `atol()` (glibc: strtol base 10).
pub fn atol(s: &[u8]) -> i64 {
    strtol(s).value
}

/// C `atoi()` (glibc: `(int) strtol()`, so out-of-range values are truncated).
pub fn atoi(s: &[u8]) -> i32 {
    strtol(s).value as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn like_the_c_library() {
        assert_eq!(strtol(b" +12x").value, 12);
        assert_eq!(strtol(b" +12x").end, 4);
        assert_eq!(strtol(b"  -12x").end, 5);
        assert_eq!(strtol(b"-7").value, -7);
        assert_eq!(strtol(b"x").end, 0);
        assert_eq!(strtol(b" -").end, 0);
        assert_eq!(strtol(b"+").end, 0);
        assert!(strtol(b"99999999999999999999").overflow);
        assert_eq!(strtol(b"99999999999999999999").value, i64::MAX);
        assert!(!strtol(b"9223372036854775807").overflow);
        assert!(strtol(b"-9223372036854775809").overflow);
        assert_eq!(atoi(b"4294967297"), 1, "truncated like (int)");
        assert_eq!(atol(b"\t15 "), 15);
    }

    proptest! {
        #[test]
        fn agrees_with_rust_on_plain_decimals(n in any::<i64>()) {
            let s = strtol(n.to_string().as_bytes());
            prop_assert_eq!(s.value, n);
            prop_assert!(!s.overflow);
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = strtol(&b);
            prop_assert!(s.end <= b.len());
        }
    }
}
