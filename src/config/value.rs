//! Conversion of expanded parameter values to typed values, with Postfix's fatal wording
//! (global/mail_conf_{int,bool,time,str}.c and global/conv_time.c in Postfix 3.7).

use std::fmt;

pub use crate::cnum::{strtol as c_strtol, Strtol};

/// A fatal configuration value error; `Display` is Postfix's fatal text (without `fatal: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// `bad numerical configuration: NAME = VALUE`
    BadInt { name: String, value: Vec<u8> },
    /// `invalid NAME parameter value N < MIN`
    IntTooSmall { name: String, value: i32, min: i32 },
    /// `invalid NAME parameter value N > MAX`
    IntTooLarge { name: String, value: i32, max: i32 },
    /// `bad boolean configuration: NAME = VALUE`
    BadBool { name: String, value: Vec<u8> },
    /// `parameter NAME: bad time value or unit: VALUE`
    BadTime { name: String, value: Vec<u8> },
    /// `invalid NAME: N (min MIN)`
    TimeTooSmall { name: String, value: i32, min: i32 },
    /// `invalid NAME: N (max MAX)`
    TimeTooLarge { name: String, value: i32, max: i32 },
    /// `bad string length L < MIN: NAME = VALUE`
    StringTooShort {
        name: String,
        value: Vec<u8>,
        min: i32,
    },
    /// `bad string length L > MAX: NAME = VALUE`
    StringTooLong {
        name: String,
        value: Vec<u8>,
        max: i32,
    },
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match self {
            ValueError::BadInt { name, value } => {
                write!(f, "bad numerical configuration: {name} = {}", show(value))
            }
            ValueError::IntTooSmall { name, value, min } => {
                write!(f, "invalid {name} parameter value {value} < {min}")
            }
            ValueError::IntTooLarge { name, value, max } => {
                write!(f, "invalid {name} parameter value {value} > {max}")
            }
            ValueError::BadBool { name, value } => {
                write!(f, "bad boolean configuration: {name} = {}", show(value))
            }
            ValueError::BadTime { name, value } => {
                write!(
                    f,
                    "parameter {name}: bad time value or unit: {}",
                    show(value)
                )
            }
            ValueError::TimeTooSmall { name, value, min } => {
                write!(f, "invalid {name}: {value} (min {min})")
            }
            ValueError::TimeTooLarge { name, value, max } => {
                write!(f, "invalid {name}: {value} (max {max})")
            }
            ValueError::StringTooShort { name, value, min } => write!(
                f,
                "bad string length {} < {min}: {name} = {}",
                value.len(),
                show(value)
            ),
            ValueError::StringTooLong { name, value, max } => write!(
                f,
                "bad string length {} > {max}: {name} = {}",
                value.len(),
                show(value)
            ),
        }
    }
}

impl std::error::Error for ValueError {}

/// Integer: the whole value must be a decimal C long that fits an int (leading blanks and a
/// sign allowed, as strtol does); then `min`/`max` (0 = no bound).
pub fn to_int(name: &str, value: &[u8], min: i32, max: i32) -> Result<i32, ValueError> {
    let parsed = c_strtol(value);
    let fits = i32::try_from(parsed.value).ok();
    let number = match fits {
        Some(number) if !value.is_empty() && parsed.end == value.len() && !parsed.overflow => {
            number
        }
        _ => {
            return Err(ValueError::BadInt {
                name: name.to_string(),
                value: value.to_vec(),
            })
        }
    };
    check_int(name, number, min, max)?;
    Ok(number)
}

/// check_mail_conf_int(): bounds, 0 meaning none.
pub fn check_int(name: &str, value: i32, min: i32, max: i32) -> Result<(), ValueError> {
    if min != 0 && value < min {
        return Err(ValueError::IntTooSmall {
            name: name.to_string(),
            value,
            min,
        });
    }
    if max != 0 && value > max {
        return Err(ValueError::IntTooLarge {
            name: name.to_string(),
            value,
            max,
        });
    }
    Ok(())
}

/// Boolean: `yes` or `no`, any case.
pub fn to_bool(name: &str, value: &[u8]) -> Result<bool, ValueError> {
    if value.eq_ignore_ascii_case(b"yes") {
        Ok(true)
    } else if value.eq_ignore_ascii_case(b"no") {
        Ok(false)
    } else {
        Err(ValueError::BadBool {
            name: name.to_string(),
            value: value.to_vec(),
        })
    }
}

/// conv_time(): a non-negative C long that fits an int, then one unit letter (`s m h d w`;
/// only the byte right after the number counts) or, without one, `default_unit`. Seconds, or
/// `None` when malformed or when the product would not fit an int.
pub fn parse_time(value: &[u8], default_unit: u8) -> Option<i32> {
    if value.is_empty() {
        return None;
    }
    let parsed = c_strtol(value);
    let count = i32::try_from(parsed.value).ok()?;
    if parsed.overflow || count < 0 {
        return None;
    }
    let unit = value.get(parsed.end).copied().unwrap_or(default_unit);
    let seconds_per_unit = match unit {
        b's' => return Some(count),
        b'm' => 60,
        b'h' => 3600,
        b'd' => 86400,
        b'w' => 7 * 86400,
        _ => return None,
    };
    (count < i32::MAX / seconds_per_unit).then(|| count * seconds_per_unit)
}

/// The unit of a time default: its first letter (get_def_time_unit), e.g. `d` for `5d`.
pub fn default_time_unit(default_value: &[u8]) -> Option<u8> {
    default_value
        .iter()
        .copied()
        .find(|b| b.is_ascii_alphabetic())
}

/// Time: [`parse_time`] with Postfix's error, then `min`/`max` seconds (0 = no bound).
pub fn to_time(
    name: &str,
    value: &[u8],
    default_unit: u8,
    min: i32,
    max: i32,
) -> Result<i32, ValueError> {
    let seconds = parse_time(value, default_unit).ok_or_else(|| ValueError::BadTime {
        name: name.to_string(),
        value: value.to_vec(),
    })?;
    check_time(name, seconds, min, max)?;
    Ok(seconds)
}

/// check_mail_conf_time(): bounds, 0 meaning none.
pub fn check_time(name: &str, value: i32, min: i32, max: i32) -> Result<(), ValueError> {
    if min != 0 && value < min {
        return Err(ValueError::TimeTooSmall {
            name: name.to_string(),
            value,
            min,
        });
    }
    if max != 0 && value > max {
        return Err(ValueError::TimeTooLarge {
            name: name.to_string(),
            value,
            max,
        });
    }
    Ok(())
}

/// String: length bounds in bytes, 0 meaning none.
pub fn check_str(name: &str, value: &[u8], min: i32, max: i32) -> Result<(), ValueError> {
    let len = value.len();
    if min > 0 && len < min as usize {
        return Err(ValueError::StringTooShort {
            name: name.to_string(),
            value: value.to_vec(),
            min,
        });
    }
    if max > 0 && len > max as usize {
        return Err(ValueError::StringTooLong {
            name: name.to_string(),
            value: value.to_vec(),
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints() {
        assert_eq!(to_int("n", b"42", 0, 0), Ok(42));
        assert_eq!(to_int("n", b" 42", 0, 0), Ok(42));
        assert_eq!(to_int("n", b"-3", 0, 0), Ok(-3));
        assert_eq!(to_int("n", b"2147483647", 0, 0), Ok(i32::MAX));
        for bad in ["", "4x", "42 ", "2147483648", "x", "1e3"] {
            assert_eq!(
                to_int("qmgr_fudge_factor", bad.as_bytes(), 0, 0)
                    .unwrap_err()
                    .to_string(),
                format!("bad numerical configuration: qmgr_fudge_factor = {bad}")
            );
        }
        assert_eq!(
            to_int("qmgr_fudge_factor", b"5", 10, 100)
                .unwrap_err()
                .to_string(),
            "invalid qmgr_fudge_factor parameter value 5 < 10"
        );
        assert_eq!(
            to_int("qmgr_fudge_factor", b"101", 10, 100)
                .unwrap_err()
                .to_string(),
            "invalid qmgr_fudge_factor parameter value 101 > 100"
        );
        assert_eq!(to_int("x", b"0", 0, 0), Ok(0));
        assert_eq!(to_int("x", b"-5", 0, 10), Ok(-5));
    }

    #[test]
    fn bools() {
        assert_eq!(to_bool("b", b"YeS"), Ok(true));
        assert_eq!(to_bool("b", b"no"), Ok(false));
        assert_eq!(
            to_bool("soft_bounce", b"true").unwrap_err().to_string(),
            "bad boolean configuration: soft_bounce = true"
        );
        assert!(to_bool("b", b" yes").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time(b"300s", b's'), Some(300));
        assert_eq!(parse_time(b"300", b's'), Some(300));
        assert_eq!(parse_time(b"3", b'd'), Some(3 * 86400));
        assert_eq!(parse_time(b"2w", b's'), Some(14 * 86400));
        assert_eq!(parse_time(b"5m", b's'), Some(300));
        assert_eq!(parse_time(b"1h", b'd'), Some(3600));
        // Only the byte after the digits is looked at.
        assert_eq!(parse_time(b"3dxyz", b's'), Some(3 * 86400));
        // No digits: C's strtol leaves the unit letter as the first byte.
        assert_eq!(parse_time(b"d", b's'), Some(0));
        assert_eq!(parse_time(b"", b's'), None);
        assert_eq!(parse_time(b"3 d", b's'), None);
        assert_eq!(parse_time(b"3x", b's'), None);
        assert_eq!(parse_time(b"-1", b's'), None);
        assert_eq!(parse_time(b"3550w", b's'), None);
        assert_eq!(parse_time(b"3549w", b's'), Some(3549 * 7 * 86400));
        assert_eq!(parse_time(b"2147483647s", b's'), Some(i32::MAX));
        assert_eq!(parse_time(b"2147483648s", b's'), None);
        assert_eq!(
            to_time("maximal_queue_lifetime", b"3y", b'd', 0, 8640000)
                .unwrap_err()
                .to_string(),
            "parameter maximal_queue_lifetime: bad time value or unit: 3y"
        );
        assert_eq!(
            to_time("maximal_queue_lifetime", b"101", b'd', 0, 8640000)
                .unwrap_err()
                .to_string(),
            "invalid maximal_queue_lifetime: 8726400 (max 8640000)"
        );
        assert_eq!(
            to_time("queue_run_delay", b"0", b's', 1, 0)
                .unwrap_err()
                .to_string(),
            "invalid queue_run_delay: 0 (min 1)"
        );
        assert_eq!(default_time_unit(b"5d"), Some(b'd'));
        assert_eq!(default_time_unit(b"300s"), Some(b's'));
    }

    #[test]
    fn strings() {
        assert!(check_str("s", b"1", 1, 0).is_ok());
        assert_eq!(
            check_str(
                "default_destination_concurrency_positive_feedback",
                b"",
                1,
                0
            )
            .unwrap_err()
            .to_string(),
            "bad string length 0 < 1: default_destination_concurrency_positive_feedback = "
        );
        assert_eq!(
            check_str("default_verp_delimiters", b"+=-", 2, 2)
                .unwrap_err()
                .to_string(),
            "bad string length 3 > 2: default_verp_delimiters = +=-"
        );
    }

    proptest::proptest! {
        #[test]
        fn conversions_never_panic(input in proptest::collection::vec(proptest::num::u8::ANY, 0..40), unit in proptest::num::u8::ANY) {
            let _ = to_int("n", &input, 1, 100);
            let _ = to_bool("n", &input);
            let _ = to_time("n", &input, unit, 1, 100);
            let _ = c_strtol(&input);
        }
    }
}
