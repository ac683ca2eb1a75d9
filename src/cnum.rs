//! The C library's number parsing as Postfix relies on it (C locale, 64-bit long): `isspace`,
//! `strtol(s, &end, 10)`, `strtod`, `atol` and `atoi`. Queue files, main.cf and argv all go
//! through it.

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

/// Leading white space and an optional sign, as strtol and strtod skip them: whether the
/// number is negative, and where its digits start.
fn sign(text: &[u8]) -> (bool, usize) {
    let at = text.iter().take_while(|&&b| is_space(b)).count();
    match text.get(at) {
        Some(b'-') => (true, at + 1),
        Some(b'+') => (false, at + 1),
        _ => (false, at),
    }
}

/// C `strtol(text, &end, 10)`: optional leading white space and sign, then decimal digits.
pub fn strtol(text: &[u8]) -> Strtol {
    let (negative, at) = sign(text);
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

/// C `strtod()` on a prefix of `text` (after blanks): decimal with optional fraction and
/// exponent, hexadecimal (`0x1.8p-1`), `inf`/`infinity`, `nan`. The value and the bytes used.
pub fn strtod(text: &[u8]) -> Option<(f64, usize)> {
    let (negative, at) = sign(text);
    let signed = |value: f64| if negative { -value } else { value };
    let rest = &text[at..];
    let starts_with_ci =
        |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
    if starts_with_ci(b"infinity") {
        return Some((signed(f64::INFINITY), at + 8));
    }
    if starts_with_ci(b"inf") {
        return Some((signed(f64::INFINITY), at + 3));
    }
    if starts_with_ci(b"nan") {
        let mut end = at + 3;
        if text.get(end) == Some(&b'(') {
            let inner = text[end + 1..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            if text.get(end + 1 + inner) == Some(&b')') {
                end += inner + 2;
            }
        }
        return Some((f64::NAN, end));
    }
    if (starts_with_ci(b"0x"))
        && rest.get(2..).is_some_and(|r| {
            r.first().is_some_and(u8::is_ascii_hexdigit)
                || (r.first() == Some(&b'.') && r.get(1).is_some_and(u8::is_ascii_hexdigit))
        })
    {
        let (value, used) = hex_float(&rest[2..]);
        return Some((signed(value), at + 2 + used));
    }
    let int_digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut end = int_digits;
    let mut frac_digits = 0;
    if rest.get(end) == Some(&b'.') {
        frac_digits = rest[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if int_digits + frac_digits > 0 {
            end += 1 + frac_digits;
        }
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(rest.get(end), Some(b'e' | b'E')) {
        let mut exp_at = end + 1;
        if matches!(rest.get(exp_at), Some(b'+' | b'-')) {
            exp_at += 1;
        }
        let exp_digits = rest
            .get(exp_at..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if exp_digits > 0 {
            end = exp_at + exp_digits;
        }
    }
    let number = std::str::from_utf8(&rest[..end]).ok()?;
    // Rust rejects a bare trailing "." ("5.") that C accepts; both mean the same value.
    let value = number
        .parse::<f64>()
        .or_else(|_| {
            number
                .replace(".e", "e")
                .replace(".E", "E")
                .trim_end_matches('.')
                .parse::<f64>()
        })
        .ok()?;
    Some((signed(value), at + end))
}

/// Hexadecimal mantissa with optional `p` exponent; the value and bytes used.
fn hex_float(text: &[u8]) -> (f64, usize) {
    let mut value = 0.0f64;
    let mut at = 0;
    while let Some(digit) = text.get(at).and_then(|b| (*b as char).to_digit(16)) {
        value = value * 16.0 + f64::from(digit);
        at += 1;
    }
    if text.get(at) == Some(&b'.') {
        at += 1;
        let mut scale = 1.0 / 16.0;
        while let Some(digit) = text.get(at).and_then(|b| (*b as char).to_digit(16)) {
            value += f64::from(digit) * scale;
            scale /= 16.0;
            at += 1;
        }
    }
    if matches!(text.get(at), Some(b'p' | b'P')) {
        let mut exp_at = at + 1;
        let negative = match text.get(exp_at) {
            Some(b'-') => {
                exp_at += 1;
                true
            }
            Some(b'+') => {
                exp_at += 1;
                false
            }
            _ => false,
        };
        let digits = text[exp_at.min(text.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 0 {
            let exponent = text[exp_at..exp_at + digits].iter().fold(0i32, |acc, d| {
                acc.saturating_mul(10).saturating_add(i32::from(d - b'0'))
            });
            value *= 2f64.powi(if negative { -exponent } else { exponent });
            at = exp_at + digits;
        }
    }
    (value, at)
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
