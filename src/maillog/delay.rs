//! Postfix's delay numbers in `delay=` and `delays=`: two significant digits, rounded half up,
//! never more decimals than delay_logging_resolution_limit, trailing zeros dropped.

/// Formats `secs` (non-negative) the way Postfix's format_tv does for delay logging.
pub fn format(secs: f64, max_decimals: u32) -> String {
    let secs = if secs.is_finite() && secs > 0.0 {
        secs
    } else {
        0.0
    };
    let wanted: i32 = if secs >= 10.0 {
        0
    } else if secs >= 1.0 {
        1
    } else if secs > 0.0 {
        1 - secs.log10().floor() as i32
    } else {
        0
    };
    let decimals = wanted.clamp(0, max_decimals.min(6) as i32) as u32;
    let scale = 10f64.powi(decimals as i32);
    let scaled = (secs * scale + 0.5).floor();
    let mut text = format!("{:.*}", decimals as usize, scaled / scale);
    if text.contains('.') {
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::format;

    #[test]
    fn like_postfix_delay_fields() {
        assert_eq!(format(0.0, 2), "0");
        assert_eq!(format(0.05, 2), "0.05");
        assert_eq!(format(0.123, 2), "0.12");
        assert_eq!(format(0.001, 2), "0");
        assert_eq!(format(1.24, 2), "1.2");
        assert_eq!(format(1.0, 2), "1");
        assert_eq!(format(9.96, 2), "10");
        assert_eq!(format(12.4, 2), "12");
        assert_eq!(format(0.5, 0), "1");
        assert_eq!(format(0.0123, 3), "0.012");
    }
}
